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

// A QIDO address only reachable inside the hospital (loopback, private,
// link-local, .local and similar names): say so while it is typed. The server
// says the same when the page comes back (templatetags/registry_notes.py).
document.addEventListener("DOMContentLoaded", function () {
  var input = document.getElementById("id_qido_url");
  var note = document.getElementById("inside-network-note");
  if (!input || !note) {
    return;
  }
  var suffixes = [".local", ".localhost", ".internal", ".intranet", ".lan", ".corp", ".home.arpa"];
  var inside = function (value) {
    var host;
    try {
      host = new URL(value.trim()).hostname.toLowerCase().replace(/\.$/, "");
    } catch (e) {
      return false;
    }
    if (!host) {
      return false;
    }
    if (host.charAt(0) === "[") {
      return /^\[(::1|f[cd][0-9a-f]{0,2}:|fe[89ab][0-9a-f]?:)/.test(host);
    }
    var v4 = host.match(/^(\d+)\.(\d+)\.\d+\.\d+$/);
    if (v4) {
      var a = Number(v4[1]), b = Number(v4[2]);
      return a === 10 || a === 127 || (a === 172 && b >= 16 && b <= 31) ||
        (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127);
    }
    if (host === "localhost" || host.indexOf(".") < 0) {
      return true;
    }
    return suffixes.some(function (s) { return host.slice(-s.length) === s; });
  };
  var sync = function () {
    note.hidden = !inside(input.value);
  };
  input.addEventListener("input", sync);
  sync();
});
