// The recovery codes page's Print button. Without JavaScript the button stays hidden and
// the page says to use the browser's Print command; the print rules in style.css apply
// either way.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("print-codes");
  if (!button) return;
  button.hidden = false;
  button.addEventListener("click", () => window.print());
  const help = document.getElementById("print-help");
  if (help) help.hidden = true;
});
