// OpsConsole: a little progressive enhancement; every page works without it.
(function () {
  "use strict";

  // Remaining time for boosts: <span data-countdown="ISO end">…</span>
  function formatRemaining(ms) {
    if (ms <= 0) return "ended";
    var minutes = Math.floor(ms / 60000);
    var days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60);
    var mins = minutes % 60;
    if (days > 0) return days + "d " + hours + "h left";
    if (hours > 0) return hours + "h " + mins + "m left";
    var seconds = Math.floor(ms / 1000) % 60;
    return mins + "m " + seconds + "s left";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (node) {
      var remaining = Date.parse(node.getAttribute("data-countdown")) - now;
      node.textContent = formatRemaining(remaining);
      node.classList.toggle("soon", remaining > 0 && remaining < 48 * 3600 * 1000);
    });
  }
  tick();
  setInterval(tick, 1000);

  // Item id fields: suggest catalog items by id or title, say whether the id is known.
  document.querySelectorAll("input[data-item-lookup]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list"));
    var hint = document.createElement("div");
    hint.className = "lookup-hint";
    hint.setAttribute("aria-live", "polite");
    input.insertAdjacentElement("afterend", hint);
    var timer = null;
    var url = input.form.getAttribute("data-lookup-url");
    function lookup() {
      var query = input.value.trim();
      if (!query || !url) { hint.textContent = ""; return; }
      fetch(url + "?q=" + encodeURIComponent(query), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { items: [] }; })
        .then(function (data) {
          if (list) {
            list.innerHTML = "";
            data.items.forEach(function (item) {
              var option = document.createElement("option");
              option.value = item.item_id;
              option.label = item.title + (item.category ? " · " + item.category : "");
              list.appendChild(option);
            });
          }
          var exact = data.items.filter(function (item) { return item.item_id === query; })[0];
          if (exact) {
            hint.textContent = "✓ " + exact.title + (exact.category ? " (" + exact.category + ")" : "");
            hint.className = "lookup-hint known";
          } else {
            hint.textContent = "Not in the catalog: it can still be used; check the id.";
            hint.className = "lookup-hint unknown";
          }
        })
        .catch(function () { hint.textContent = ""; });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(lookup, 200); });
    if (input.value) lookup();
  });

  // Keyboard: "/" focuses the page's search box.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
    if (event.key === "/" && !typing) {
      var search = document.querySelector("input[type=search]");
      if (search) { event.preventDefault(); search.focus(); }
    }
  });
})();
