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

  // Copy buttons: <button data-copy="#input" hidden> (shown only when copying works).
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    var status = document.querySelector("[data-copy-status]");
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.value).then(
        function () {
          button.textContent = "Copied";
          if (status) status.textContent = "Copied to the clipboard.";
        },
        function () {
          source.focus();
          source.select();
          if (status) status.textContent = "Copying was refused: press Ctrl+C (⌘C) to copy the selected key.";
        }
      );
    });
  });
  document.querySelectorAll("input[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  // "Another value…" in a select reveals its text box: <input data-other-for="id">.
  document.querySelectorAll("input[data-other-for]").forEach(function (input) {
    var select = document.getElementById(input.getAttribute("data-other-for"));
    if (!select) return;
    function sync() {
      var other = select.value === "__other__";
      input.hidden = !other;
      input.disabled = !other;
    }
    select.addEventListener("change", function () { sync(); if (!input.hidden) input.focus(); });
    sync();
  });

  // Heartbeats: <time data-ago="ISO"> reads "12 s ago" and keeps counting.
  function ago(ms) {
    var seconds = Math.floor(ms / 1000);
    if (seconds < 1) return "just now";
    if (seconds >= 86400) return Math.floor(seconds / 86400) + " d ago";
    if (seconds >= 3600) return Math.floor(seconds / 3600) + " h ago";
    if (seconds >= 60) return Math.floor(seconds / 60) + " min ago";
    return seconds + " s ago";
  }
  function tickAgo() {
    var now = Date.now();
    document.querySelectorAll("[data-ago]").forEach(function (node) {
      node.textContent = ago(now - Date.parse(node.getAttribute("data-ago")));
    });
  }
  if (document.querySelector("[data-ago]")) setInterval(tickAgo, 1000);

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
