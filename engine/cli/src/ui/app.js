// stent console: asks before a form that changes state is sent; loads a
// section (a call's journal, an invocation's events) the first time it is
// opened, from its `data-src`; and keeps a page current without reloading
// it: an element with `data-live` names a stream of server-sent events; on
// each change the page's main part is fetched again and swapped in, with
// the sections the user opened kept open (and loaded again).
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// `toggle` does not bubble: listen while it is captured.
document.addEventListener(
  "toggle",
  async (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open) {
      return;
    }
    const src = details.dataset.src;
    const slot = details.querySelector(":scope > .lazy, :scope > .child > .lazy");
    if (!src || !slot || details.dataset.loaded) {
      return;
    }
    details.dataset.loaded = "loading";
    try {
      const response = await fetch(src, { credentials: "same-origin" });
      const part = new DOMParser().parseFromString(await response.text(), "text/html");
      slot.replaceChildren(...part.body.childNodes);
      details.dataset.loaded = "yes";
    } catch (error) {
      slot.textContent = "could not load: " + error;
      delete details.dataset.loaded;
    }
  },
  true,
);

async function refresh() {
  const open = new Set(
    Array.from(document.querySelectorAll("details[open][data-key]"), (d) => d.dataset.key),
  );
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.querySelector("main");
  const current = document.querySelector("main");
  if (fresh && current) {
    current.replaceWith(fresh);
    for (const d of document.querySelectorAll("details[data-key]")) {
      if (open.has(d.dataset.key)) {
        d.open = true;
      }
    }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }
}

function watch() {
  const live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) {
    return;
  }
  const source = new EventSource(live.getAttribute("data-live"));
  // A stream left open by a page the user left holds one of the browser's
  // few connections to the console (six per host over HTTP/1.1).
  window.addEventListener("pagehide", () => source.close());
  let first = true;
  let busy = false;
  let again = false;
  source.addEventListener("changed", async () => {
    if (first) {
      // The baseline: what the page already shows.
      first = false;
      document.body.dataset.live = "connected";
      return;
    }
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        await refresh();
      } while (again);
    } finally {
      busy = false;
    }
  });
}

watch();
// A page restored from the back-forward cache had its stream closed.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    watch();
  }
});
