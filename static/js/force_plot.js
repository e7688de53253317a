// Draws the SHAP force plot with shap's own bundle (loaded before this file), the
// way shap.force_plot's HTML does; the data comes from a json_script tag.
(function () {
  "use strict";
  var element = document.getElementById("force-plot");
  if (!element || !window.SHAP) return;
  var data = JSON.parse(
    document.getElementById(element.getAttribute("data-plot")).textContent
  );
  element.textContent = "";
  SHAP.ReactDom.render(
    SHAP.React.createElement(SHAP.AdditiveForceVisualizer, data),
    element
  );
})();
