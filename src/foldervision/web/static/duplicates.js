// The duplicates review page: list the groups, let a click choose the copy to keep, move the
// others (after a confirmation) through the server's journal, and undo.
"use strict";

const $ = (id) => document.getElementById(id);
const urlPath = (path) => path.split("/").map(encodeURIComponent).join("/");
let groups = [];
let lastJournal = null;

function showMessage(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "message error" : "message";
  message.hidden = !text;
}

async function call(url, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(url, options);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function kilobytes(size) {
  return size >= 1048576 ? `${(size / 1048576).toFixed(1)} MB` : `${Math.round(size / 1024)} kB`;
}

function factsLine(file) {
  const parts = [`${file.width}×${file.height}`, kilobytes(file.size), file.format];
  parts.push(file.captured ? file.captured : "no date");
  parts.push(file.folder === "." ? "(top folder)" : `${file.folder}/`);
  return parts.join(" · ");
}

function fileButton(group, file) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "file" + (file.path === group.keep ? " keeper" : "");
  button.dataset.path = file.path;
  button.title = `keep ${file.path}`;
  const image = document.createElement("img");
  image.src = `/thumbs/db/${urlPath(file.path)}`;
  image.alt = file.path;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.path.split("/").pop();
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = " keep";
  name.append(badge);
  const facts = document.createElement("div");
  facts.className = "facts";
  facts.textContent = factsLine(file);
  button.append(image, name, facts);
  button.addEventListener("click", () => {
    group.keep = file.path;
    group.why = "chosen here";
    render();
  });
  return button;
}

function render() {
  $("groups").replaceChildren(...groups.map((group, number) => {
    const section = document.createElement("section");
    section.className = "group";
    section.dataset.group = String(number + 1);
    const title = document.createElement("h2");
    title.textContent = `${group.files.length} copies — keep ${group.keep} (${group.why})`;
    const list = document.createElement("ul");
    list.append(...group.files.map((file) => {
      const item = document.createElement("li");
      item.append(fileButton(group, file));
      return item;
    }));
    section.append(title, list);
    return section;
  }));
  const others = groups.reduce((count, group) => count + group.files.length - 1, 0);
  $("move").textContent = `Move the ${others} others…`;
  $("move-form").hidden = groups.length === 0;
}

async function load() {
  showMessage("Looking for copies of the same photo…", false);
  try {
    const answer = await call("/api/duplicates");
    groups = answer.groups;
    if (!$("destination").value) $("destination").value = answer.destination;
  } catch (error) {
    showMessage(`Could not list the duplicates: ${error.message}`, true);
    return;
  }
  showMessage(groups.length ? `${groups.length} groups of copies, largest first.`
                            : "No copies of the same photo were found.", false);
  render();
}

async function moveOthers(event) {
  event.preventDefault();
  const destination = $("destination").value.trim();
  const others = groups.reduce((count, group) => count + group.files.length - 1, 0);
  if (!window.confirm(`Move ${others} files to ${destination}? The kept copies stay; ` +
                      "nothing is deleted, and Undo puts everything back.")) return;
  const body = {
    destination,
    groups: groups.map((group) => ({files: group.files.map((f) => f.path), keep: group.keep})),
  };
  try {
    const answer = await call("/api/duplicates/move", body);
    lastJournal = answer.journal;
    $("done-text").textContent =
      `Moved ${answer.moved.length} files to ${destination}. Journal: ${answer.journal}`;
    $("done").hidden = false;
    $("undo").hidden = false;
  } catch (error) {
    showMessage(`Nothing was moved: ${error.message}`, true);
    return;
  }
  await load();
}

async function undo() {
  try {
    const answer = await call("/api/duplicates/undo", {journal: lastJournal});
    $("done-text").textContent = `Put back ${answer.moved_back} files.`;
    $("undo").hidden = true;
  } catch (error) {
    showMessage(`Undo failed: ${error.message}`, true);
    return;
  }
  await load();
}

$("move-form").addEventListener("submit", moveOthers);
$("undo").addEventListener("click", undo);
load();
