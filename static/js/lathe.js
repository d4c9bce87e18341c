// Small progressive enhancements; every page works without them.
document.addEventListener("htmx:beforeSwap", (event) => {
  // Forms answer 4xx with their inline errors: show them instead of dropping them.
  const status = event.detail.xhr.status;
  if (status >= 400 && status < 500) { event.detail.shouldSwap = true; event.detail.isError = false; }
});
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest("form");
  const bar = form && form.querySelector("progress[data-upload-progress]");
  if (bar && event.detail.lengthComputable) {
    bar.hidden = false;
    bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  }
});
// Destructive forms ask first: <form data-confirm="Delete …?"> (no inline handlers: the CSP forbids them).
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) { event.preventDefault(); event.stopImmediatePropagation(); }
}, true);
// A form with <select data-kind-select> shows only the chosen kind's <fieldset data-kind="…">
// (the compress form: prune or distill options). Hidden fieldsets are disabled too, so they
// do not submit; without this script every fieldset shows and the server ignores the others.
function showChosenKind(select) {
  const form = select.closest("form");
  if (!form) return;
  form.querySelectorAll("fieldset[data-kind]").forEach((fieldset) => {
    const chosen = fieldset.dataset.kind.split(" ").includes(select.value);
    fieldset.hidden = !chosen;
    fieldset.disabled = !chosen;
  });
}
function showChosenKinds(root) {
  if (root && root.querySelectorAll) root.querySelectorAll("select[data-kind-select]").forEach(showChosenKind);
}
document.addEventListener("change", (event) => {
  if (event.target.matches && event.target.matches("select[data-kind-select]")) showChosenKind(event.target);
});
document.addEventListener("htmx:load", (event) => showChosenKinds(event.detail.elt));
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => showChosenKinds(document));
} else {
  showChosenKinds(document);
}
