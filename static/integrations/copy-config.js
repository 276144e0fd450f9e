/* "Copy" buttons for the fix-it configurations: data-copy-target names the <pre>. */
(function () {
  "use strict";
  document.addEventListener("click", async function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copyTarget);
    var status = button.nextElementSibling;
    try {
      await navigator.clipboard.writeText(source.textContent);
      if (status) { status.textContent = "Copied."; }
    } catch (error) {
      // No clipboard (plain HTTP): select the text so Ctrl-C copies it.
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (status) { status.textContent = "Selected: press Ctrl-C (or ⌘-C) to copy."; }
    }
  });
})();
