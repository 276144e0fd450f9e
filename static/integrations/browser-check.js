/* The browser-side connectivity check: the QIDO search run with fetch() from the
 * visitor's own browser, which can reach archives inside the hospital network that
 * the registry cannot. Reusable: PacsbinBrowserCheck.run(qidoUrl, options) returns
 * {origin, outcome, findings}; record(url, result, csrfToken) posts it. Elements
 * marked data-browser-check are wired up on load (see the admin template).
 *
 * A browser hides why a cross-origin request failed: a CORS refusal and an
 * unreachable server both surface as the same TypeError. A second request in
 * "no-cors" mode (whose answer the page cannot read) tells the two apart only
 * as far as "the server answered something" versus "nothing came back".
 */
(function (root) {
  "use strict";

  var TIMEOUT_MS = 15000;
  var DICOM_JSON = "application/dicom+json";

  function fetchWithTimeout(url, init) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    init.signal = controller.signal;
    return fetch(url, init).finally(function () { clearTimeout(timer); });
  }

  function finding(code, message) {
    return { code: code, message: message };
  }

  async function reachable(url) {
    try {
      await fetchWithTimeout(url, { mode: "no-cors", credentials: "omit", cache: "no-store" });
      return true;
    } catch (error) {
      return false;
    }
  }

  async function judge(response, url, origin) {
    if (response.status === 204) {
      return { outcome: "ok", findings: [finding("browser_ok",
        "Your browser on " + origin + " ran the QIDO search and may read the answer (204: no studies).")] };
    }
    if (response.status !== 200) {
      return { outcome: "not_dicomweb", findings: [finding("browser_bad_status",
        "The QIDO search (" + url + ") answered HTTP " + response.status +
        ", not 200. The CORS headers are fine; check that the URL is the archive's DICOMweb root.")] };
    }
    var type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
    var data = null;
    try { data = JSON.parse(await response.text()); } catch (error) { data = null; }
    if ((type !== DICOM_JSON && type !== "application/json") || !Array.isArray(data)) {
      return { outcome: "not_dicomweb", findings: [finding("browser_not_dicomweb",
        "The QIDO search (" + url + ") did not answer a DICOMweb JSON array (content type " +
        (type || "none") + "). Check that the URL is the archive's DICOMweb root.")] };
    }
    return { outcome: "ok", findings: [finding("browser_ok",
      "Your browser on " + origin + " ran the QIDO search and may read the answer (" +
      data.length + " stud" + (data.length === 1 ? "y" : "ies") + ").")] };
  }

  async function run(qidoUrl, options) {
    options = options || {};
    var origin = root.location.origin;
    var url = qidoUrl.replace(/\/+$/, "") + "/studies?limit=1";
    var response;
    try {
      response = await fetchWithTimeout(url, {
        mode: "cors",
        credentials: options.credentials ? "include" : "omit",
        cache: "no-store",
        headers: { Accept: DICOM_JSON },
      });
    } catch (error) {
      if (options.pacsbinProxy && await proxyAnswers(qidoUrl)) {
        return { origin: origin, outcome: "unreachable", findings: [archiveRefusedProxy(url)] };
      }
      if (await reachable(url)) {
        return { origin: origin, outcome: "cors_missing", findings: [finding("browser_cors_blocked",
          "Your browser reached the archive but was not allowed to read its answer: the " +
          "CORS headers are missing, or allow another origin than " + origin + " (the browser " +
          "does not say which). Fix: the archive or a reverse proxy must send " +
          "Access-Control-Allow-Origin for this origin; see the fix-it configurations.")] };
      }
      return { origin: origin, outcome: "unreachable", findings: [finding("browser_unreachable",
        "Your browser got no answer from " + url + ": the archive is not reachable from this " +
        "computer, its certificate is not trusted, or the request was blocked (the browser " +
        "does not say which). Check the URL, and that this computer is inside the network " +
        "that reaches the archive.")] };
    }
    if (options.pacsbinProxy && response.status >= 500) {
      return { origin: origin, outcome: "unreachable", findings: [archiveRefusedProxy(url)] };
    }
    var judged = await judge(response, url, origin);
    judged.origin = origin;
    return judged;
  }

  // Pacsbin's proxy answers /ping itself, with its CORS headers: when that
  // works but the search does not, the proxy is fine and the archive behind
  // it did not answer its C-FIND (it waits for ever when the archive aborts).
  async function proxyAnswers(qidoUrl) {
    try {
      var ping = await fetchWithTimeout(qidoUrl.replace(/\/+$/, "") + "/ping",
        { mode: "cors", credentials: "omit", cache: "no-store" });
      return ping.ok;
    } catch (error) {
      return false;
    }
  }

  function archiveRefusedProxy(url) {
    return finding("browser_proxy_archive_refused",
      "Pacsbin's proxy answers your browser, but its search of the archive (" + url +
      ") did not come back: almost always the archive refuses the proxy because it does " +
      "not know it. Fix: register the proxy's AE title on the archive, with its host and " +
      "DIMSE port, allowed to query and retrieve (see the sheet for the archive's " +
      "administrators), then check the archive's AE title, host and port in config.jsonc.");
  }

  async function record(recordUrl, result, csrfToken) {
    var response = await fetch(recordUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify({ outcome: result.outcome, findings: result.findings }),
    });
    var body = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      throw new Error("The registry did not record the check (HTTP " + response.status + ").");
    }
    return body;
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) { return input.value; }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function show(output, lines, outcome) {
    output.textContent = "";
    var badge = document.createElement("span");
    badge.className = "pi-badge pi-outcome-" + (outcome === "ok" ? "ok" : "failed");
    badge.textContent = outcome;
    output.appendChild(badge);
    var list = document.createElement("ul");
    lines.forEach(function (line) {
      var item = document.createElement("li");
      item.textContent = line;
      list.appendChild(item);
    });
    output.appendChild(list);
  }

  function wire(element) {
    var button = element.querySelector("[data-browser-check-run]");
    var output = element.querySelector("[data-browser-check-output]");
    var originLabel = element.querySelector("[data-browser-check-origin]");
    if (originLabel) { originLabel.textContent = root.location.origin; }
    if (!button || !output) { return; }
    button.addEventListener("click", async function () {
      button.disabled = true;
      output.textContent = "Checking from your browser…";
      try {
        var result = await run(element.dataset.qidoUrl, {
          credentials: element.dataset.credentials === "true",
          pacsbinProxy: element.dataset.pacsbinProxy === "true",
        });
        var lines = result.findings.map(function (f) { return f.message; });
        lines.push("Origin tested: " + result.origin + ".");
        if (element.dataset.recordUrl) {
          var saved = await record(element.dataset.recordUrl, result, csrfToken());
          lines.push("Recorded as check #" + saved.id + ".");
        }
        show(output, lines, result.outcome);
        output.dataset.outcome = result.outcome;
      } catch (error) {
        output.textContent = String(error.message || error);
        output.dataset.outcome = "error";
      } finally {
        button.disabled = false;
      }
    });
  }

  root.PacsbinBrowserCheck = { run: run, record: record, wire: wire };
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-browser-check]").forEach(wire);
  });
})(window);
