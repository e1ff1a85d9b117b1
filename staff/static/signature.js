/* The customer's signature on the staff phone: drawn with a finger on a canvas, sent as a
   PNG (data URL) in the form's hidden field. Loaded as a file (the page's CSP allows no
   inline script). */
(function () {
  "use strict";

  function setUp(form) {
    var canvas = form.querySelector("[data-signature-pad]");
    var field = form.querySelector("[data-signature-value]");
    var clear = form.querySelector("[data-signature-clear]");
    var noJs = form.querySelector("[data-signature-nojs]");
    if (!canvas || !field) return;
    if (noJs) noJs.hidden = true;
    var context = canvas.getContext("2d");
    var drawing = false;
    var drawn = false;

    function reset() {
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.strokeStyle = "#111111";
      context.lineWidth = 4;
      context.lineCap = "round";
      context.lineJoin = "round";
      drawn = false;
      field.value = "";
    }

    function point(event) {
      var box = canvas.getBoundingClientRect();
      return {
        x: ((event.clientX - box.left) * canvas.width) / box.width,
        y: ((event.clientY - box.top) * canvas.height) / box.height,
      };
    }

    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      drawing = true;
      if (canvas.setPointerCapture) canvas.setPointerCapture(event.pointerId);
      var missing = form.querySelector(".signature-missing");
      if (missing) missing.parentNode.removeChild(missing);
      var at = point(event);
      context.beginPath();
      context.moveTo(at.x, at.y);
      context.lineTo(at.x + 0.1, at.y + 0.1);
      context.stroke();
      drawn = true;
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      event.preventDefault();
      var at = point(event);
      context.lineTo(at.x, at.y);
      context.stroke();
    });
    function stop() {
      if (!drawing) return;
      drawing = false;
      field.value = drawn ? canvas.toDataURL("image/png") : "";
    }
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    canvas.addEventListener("pointerleave", stop);
    if (clear) clear.addEventListener("click", reset);
    form.addEventListener("submit", function (event) {
      if (drawn) field.value = canvas.toDataURL("image/png");
      if (!field.value) {
        event.preventDefault();
        var hint = form.querySelector(".signature-missing");
        if (!hint) {
          hint = document.createElement("p");
          hint.className = "error signature-missing";
          hint.setAttribute("role", "alert");
          hint.textContent = "请客户在签名框里签名后再提交。";
          canvas.parentNode.insertBefore(hint, canvas.nextSibling);
        }
      }
    });
    reset();
  }

  var forms = document.querySelectorAll("[data-signature-form]");
  for (var i = 0; i < forms.length; i += 1) setUp(forms[i]);
})();
