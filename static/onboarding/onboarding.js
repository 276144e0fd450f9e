// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Errors: move focus to the summary so screen readers and keyboard users
  // land on the list of problems first.
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
  }

  // "WADO-RS same as QIDO-RS": hide the second address while ticked.
  var same = document.getElementById("id_wado_same");
  var wado = document.querySelector(".js-wado");
  if (same && wado) {
    var sync = function () {
      wado.classList.toggle("is-hidden", same.checked);
    };
    same.addEventListener("change", sync);
    sync();
  }
});
