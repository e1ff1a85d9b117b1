// Settings pages: the watermark preview follows the form as it changes, and the keyword
// tester answers as one types. Without this script the 预览 and 看看去向 buttons do the same.
(function () {
  "use strict";
  var form = document.getElementById("watermark-form");
  var image = document.getElementById("watermark-preview");
  if (form && image) {
    var update = function () {
      var query = new URLSearchParams();
      query.set("position", form.elements.position.value);
      query.set("scale", form.elements.scale.value || "1");
      query.set("show_capture_time", form.elements.show_capture_time.checked ? "1" : "0");
      image.src = form.getAttribute("data-preview") + "?" + query.toString();
    };
    form.addEventListener("change", update);
    form.addEventListener("input", update);
  }

  var tester = document.getElementById("keyword-tester");
  var result = document.getElementById("keyword-result");
  if (tester && result) {
    var timer = null;
    var ask = function () {
      var body = new FormData(tester);
      body.set("fragment", "1");
      fetch(tester.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" })
        .then(function (answer) { return answer.ok ? answer.text() : null; })
        .then(function (html) { if (html !== null) { result.innerHTML = html; } })
        .catch(function () { /* the button still works */ });
    };
    tester.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(ask, 300);
    });
    tester.addEventListener("submit", function (event) { event.preventDefault(); ask(); });
  }
})();
