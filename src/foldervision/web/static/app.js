// The page's behaviour in plain JavaScript: browse the library a page at a time (newest first),
// narrow it with the filters, search by clicking any photo or dropping one, or by words (where
// the folder has a CLIP index), and pick up new photos while the server follows the folder
// (it polls /api/info's update time).
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const urlPath = (path) => path.split("/").map(encodeURIComponent).join("/");
const kValue = () => $("k").value || "4";
const pageSize = () => Number(document.body.dataset.pageSize) || 60;

const library = { loaded: 0, total: null, loading: false, generation: 0, updatedAt: null };
let lastSearch = null; // () => a promise of the search again (the filters changed)

function showMessage(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "message error" : "message";
  message.hidden = !text;
}

// ------------------------------------------------------------------------------------------
// Filters: the same query parameters for browsing and for searching.

function nextDay(day) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + 1);
  return date.toISOString().slice(0, 10);
}

function filterParams() {
  const to = $("taken-to").value;
  return new URLSearchParams({
    taken_after: $("taken-from").value,
    taken_before: to ? nextDay(to) : "", // the page's "to" day is included
    camera: $("camera").value,
    under: $("under").value,
  });
}

function fillSelect(select, options) {
  // Keep what is chosen (or the server's starting filter) even when it is not listed.
  const chosen = select.value || select.dataset.initial || "";
  const first = select.options[0];
  const items = options.map(([value, label]) => new Option(label, value));
  if (chosen && !options.some(([value]) => value === chosen)) items.push(new Option(chosen, chosen));
  select.replaceChildren(first, ...items);
  select.value = chosen;
  select.dataset.initial = "";
}

// ------------------------------------------------------------------------------------------
// The header and the filter menus, from /api/library.

async function refreshLibrary() {
  let answer;
  try {
    answer = await (await fetch("/api/library")).json();
  } catch (error) {
    return;
  }
  $("info-images").textContent = answer.images_text;
  $("info-dates").textContent = answer.dates_text;
  $("info-updated").textContent = answer.updated_text;
  $("info-model").textContent = answer.model_text;
  fillSelect($("camera"), answer.cameras.map((camera) => [camera.name, `${camera.name} (${camera.photos})`]));
  fillSelect($("under"), answer.folders.map((folder) => {
    const depth = folder.path.split("/").length - 1;
    return [folder.path, `${"\u00a0\u00a0".repeat(depth)}${folder.path} (${folder.photos})`];
  }));
}

// ------------------------------------------------------------------------------------------
// Browsing: pages of /api/files, appended as the end of the grid comes into view.

function shortDate(taken) {
  return taken ? taken.slice(0, 16).replace("T", " ") : "no date";
}

function tile(file) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = `/images/db/${urlPath(file.path)}`;
  link.dataset.path = file.path;
  link.title = `search with ${file.path}`;
  const image = document.createElement("img");
  image.src = `/thumbs/db/${urlPath(file.path)}`;
  image.alt = file.path;
  image.loading = "lazy";
  const date = document.createElement("span");
  date.className = "date";
  date.textContent = shortDate(file.taken);
  date.title = file.taken_source === "exif" ? "taken (camera's clock)" : "file date (no EXIF date)";
  const folder = document.createElement("span");
  folder.className = "folder";
  folder.textContent = file.folder || "(top folder)";
  link.append(image, date, folder);
  item.append(link);
  return item;
}

async function loadPage(reset) {
  if (library.loading && !reset) return;
  if (reset) {
    library.generation += 1;
    library.loaded = 0;
    library.total = null;
    $("new-photos").hidden = true;
  }
  const generation = library.generation;
  library.loading = true;
  const params = filterParams();
  params.set("offset", String(library.loaded));
  params.set("limit", String(pageSize()));
  params.set("sort", "taken");
  let response;
  let answer;
  try {
    response = await fetch(`/api/files?${params}`);
    answer = await response.json();
  } catch (error) {
    if (generation === library.generation) library.loading = false;
    showMessage(`Browsing failed: ${error.message || "the server did not answer"}`, true);
    return;
  }
  if (generation !== library.generation) return; // a newer listing replaced this one
  library.loading = false;
  if (!response.ok) {
    showMessage(`Browsing failed: ${answer.error || response.statusText}`, true);
    return;
  }
  const tiles = answer.files.map(tile);
  if (reset) $("grid").replaceChildren(...tiles);
  else $("grid").append(...tiles);
  library.loaded += answer.files.length;
  library.total = answer.total;
  showProgress();
  if (endInView()) loadPage(false); // a tall screen: fill it
}

function showProgress() {
  const { loaded, total } = library;
  const more = loaded < total;
  $("count").textContent = `${total.toLocaleString("en")} photo${total === 1 ? "" : "s"}`;
  $("more").hidden = !more;
  $("grid-end").textContent = total === 0 ? "No photos match these filters." : more ? "" : `All ${total.toLocaleString("en")} shown.`;
}

function endInView() {
  const more = library.total !== null && library.loaded < library.total;
  return more && $("grid-end").getBoundingClientRect().top < window.innerHeight + 800;
}

// ------------------------------------------------------------------------------------------
// Searching, among the photos the filters keep.

async function search(request, queryImage, queryName) {
  showMessage("Searching…", false);
  let response;
  let answer;
  try {
    response = await fetch(request.url, request.options);
    answer = await response.json();
  } catch (error) {
    showMessage(`Search failed: ${error.message || "the server did not answer"}`, true);
    return;
  }
  if (!response.ok) {
    showMessage(`Search failed: ${answer.error || response.statusText}`, true);
    return;
  }
  showMessage(answer.results.length ? "" : "No photos match these filters.", false);
  render(answer, queryImage, queryName);
  const ms = response.headers.get("X-Search-Ms");
  const reranked = answer.reranking ? ` · re-ranked (${answer.reranking.method}): ${answer.reranking.distance}` : "";
  $("timing").textContent = (ms ? `searched in ${ms} ms on the server` : "") + reranked;
}

function render(answer, queryImage, queryName) {
  $("query-image").hidden = !queryImage; // a search by words has no query image
  if (queryImage) $("query-image").src = queryImage;
  else $("query-image").removeAttribute("src");
  $("query-name").textContent = queryName;
  const grid = $("results");
  grid.replaceChildren(...answer.results.map((match) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/images/db/${urlPath(match.path)}`;
    link.dataset.path = match.path;
    link.title = `search with ${match.path}`;
    const image = document.createElement("img");
    image.src = `/thumbs/db/${urlPath(match.path)}`;
    image.alt = match.path;
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = `#${match.rank} · ${match.distance.toFixed(4)} · ${match.path}`;
    link.append(image, caption);
    item.append(link);
    return item;
  }));
  $("answer").hidden = false;
}

function searchPath(root, path) {
  lastSearch = () => searchPath(root, path);
  const query = filterParams();
  query.set("path", path);
  query.set("root", root);
  query.set("k", kValue());
  document.querySelectorAll("#strip button").forEach((button) => {
    button.classList.toggle("selected", button.dataset.root === root && button.dataset.path === path);
  });
  return search({ url: `/api/search?${query}` }, `/thumbs/${root}/${urlPath(path)}`, path);
}

function searchFile(file) {
  const maxBytes = Number(document.body.dataset.maxUploadMb) * 1024 * 1024;
  if (file.size > maxBytes) {
    showMessage(`Search failed: ${file.name} is larger than ${document.body.dataset.maxUploadMb} MB`, true);
    return;
  }
  lastSearch = () => searchFile(file);
  const form = new FormData();
  form.append("file", file);
  form.append("k", kValue());
  const request = { url: `/api/search?${filterParams()}`, options: { method: "POST", body: form } };
  search(request, URL.createObjectURL(file), file.name);
}

function searchWords(text) {
  const words = text.trim();
  if (!words) return;
  lastSearch = () => searchWords(words);
  const query = filterParams();
  query.set("q", words);
  query.set("k", kValue());
  document.querySelectorAll("#strip button").forEach((button) => button.classList.remove("selected"));
  search({ url: `/api/search-text?${query}` }, null, `“${words}”`);
}

function closeAnswer() {
  lastSearch = null;
  $("answer").hidden = true;
  $("timing").textContent = "";
  showMessage("", false);
}

// ------------------------------------------------------------------------------------------
// New photos: when the index's update time moves, refresh the header, menus and first page.

async function poll() {
  if (document.visibilityState !== "visible") return;
  let info;
  try {
    info = await (await fetch("/api/info")).json();
  } catch (error) {
    return;
  }
  if (info.updated_at === library.updatedAt) return;
  library.updatedAt = info.updated_at;
  await refreshLibrary();
  if (window.scrollY < 200 || library.loaded <= pageSize()) loadPage(true);
  else $("new-photos").hidden = false;
}

function clickedPath(event) {
  const link = event.target.closest("a[data-path]");
  if (!link) return null;
  event.preventDefault();
  return link.dataset.path;
}

document.addEventListener("DOMContentLoaded", () => {
  const updated = document.body.dataset.updatedAt;
  library.updatedAt = updated ? Number(updated) : null;
  fillSelect($("camera"), []);
  fillSelect($("under"), []);
  refreshLibrary();
  loadPage(true);
  setInterval(poll, POLL_MS);

  $("filters").addEventListener("change", () => {
    loadPage(true);
    if (lastSearch) lastSearch();
  });
  $("clear-filters").addEventListener("click", () => {
    ["taken-from", "taken-to", "camera", "under"].forEach((id) => { $(id).value = ""; });
    $("filters").dispatchEvent(new Event("change"));
  });
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting) && endInView()) loadPage(false);
  }, { rootMargin: "800px" }).observe($("grid-end"));
  $("more").addEventListener("click", () => loadPage(false));
  $("show-new").addEventListener("click", () => { loadPage(true); window.scrollTo({ top: $("library").offsetTop }); });

  const strip = $("strip");
  if (strip) {
    strip.addEventListener("click", (event) => {
      const button = event.target.closest("button.query");
      if (button) searchPath(button.dataset.root, button.dataset.path);
    });
  }
  $("grid").addEventListener("click", (event) => {
    const path = clickedPath(event);
    if (path === null) return;
    searchPath("db", path);
    window.scrollTo({ top: 0 });
  });
  $("results").addEventListener("click", (event) => {
    const path = clickedPath(event);
    if (path !== null) searchPath("db", path);
  });
  $("close-answer").addEventListener("click", closeAnswer);
  $("words").addEventListener("submit", (event) => {
    event.preventDefault();
    searchWords($("words-query").value);
  });
  $("file").addEventListener("change", () => {
    if ($("file").files.length) searchFile($("file").files[0]);
    $("file").value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) searchFile(event.dataTransfer.files[0]);
  });
});
