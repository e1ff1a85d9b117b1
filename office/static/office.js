// The console's small script: every page works without it. Forms that ask for a
// confirmation say so in data-confirm; elements with data-poll refresh their content from
// the address it names (the same page's fragment) every data-every seconds.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var button = form.querySelector("button[type=submit]");
    if (button) {
      window.setTimeout(function () { button.disabled = true; }, 0);
    }
  });

  function poll(element) {
    var url = element.getAttribute("data-poll");
    var every = Math.max(5, Number(element.getAttribute("data-every") || 20)) * 1000;
    function refresh() {
      if (document.hidden) { return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (answer) {
          if (answer.status === 401 || answer.redirected) { window.location.reload(); return null; }
          return answer.ok ? answer.text() : null;
        })
        .then(function (html) { if (html !== null) { element.innerHTML = html; } })
        .catch(function () { /* offline for a moment: the next round tries again */ });
    }
    window.setInterval(refresh, every);
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), poll);
})();
