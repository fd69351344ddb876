// The page's behaviour in plain JavaScript: pick, drop or click an image; show the answer.
"use strict";

const $ = (id) => document.getElementById(id);
const urlPath = (path) => path.split("/").map(encodeURIComponent).join("/");
const kValue = () => $("k").value || "4";

function showMessage(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "message error" : "message";
  message.hidden = !text;
}

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
  showMessage("", false);
  render(answer, queryImage, queryName);
  const ms = response.headers.get("X-Search-Ms");
  $("timing").textContent = ms ? `searched in ${ms} ms on the server` : "";
}

function render(answer, queryImage, queryName) {
  $("query-image").src = queryImage;
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
  const query = new URLSearchParams({ path, root, k: kValue() });
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
  const form = new FormData();
  form.append("file", file);
  form.append("k", kValue());
  search({ url: "/api/search", options: { method: "POST", body: form } }, URL.createObjectURL(file), file.name);
}

document.addEventListener("DOMContentLoaded", () => {
  $("strip").addEventListener("click", (event) => {
    const button = event.target.closest("button.query");
    if (button) searchPath(button.dataset.root, button.dataset.path);
  });
  $("results").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-path]");
    if (!link) return;
    event.preventDefault();
    searchPath("db", link.dataset.path);
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
