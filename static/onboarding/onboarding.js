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

// "How does your archive speak?": show the DIMSE part (Pacsbin's proxy) or the
// DICOMweb part. Without this script both parts show and the server decides
// by the answer; hidden inputs keep what was typed.
document.addEventListener("DOMContentLoaded", function () {
  var choices = document.querySelectorAll('input[name="archive_speaks"]');
  var cors = document.querySelectorAll('input[name="cors_mode"]');
  if (!choices.length) {
    return;
  }
  var proxyUrl = document.getElementById("id_proxy_url_field");
  var sync = function () {
    var speaks = "dicomweb";
    choices.forEach(function (c) { if (c.checked) { speaks = c.value; } });
    var proxied = false;
    cors.forEach(function (c) { if (c.checked && c.value === "dimse_proxy") { proxied = true; } });
    document.querySelectorAll(".js-speaks").forEach(function (part) {
      var mine = part.classList.contains("js-speaks-" + speaks);
      part.classList.toggle("is-hidden", !mine);
    });
    // The proxy's address is asked for a DIMSE archive, and for a DICOMweb
    // archive behind Pacsbin's proxy: then it shows in the DICOMweb part.
    if (proxyUrl) {
      var dimsePart = document.querySelector(".js-speaks-dimse");
      var corsPart = document.getElementById("s-cors").parentNode;
      if (speaks === "dicomweb" && proxied) {
        corsPart.appendChild(proxyUrl);
      } else if (dimsePart && proxyUrl.parentNode !== dimsePart) {
        var before = document.getElementById("id_proxy_ae_title_field");
        dimsePart.insertBefore(proxyUrl, before);
      }
    }
  };
  choices.forEach(function (c) { c.addEventListener("change", sync); });
  cors.forEach(function (c) { c.addEventListener("change", sync); });
  sync();
});
