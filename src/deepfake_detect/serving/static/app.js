// The page of `deepfake-detect serve`: one POST /v1/predict per chosen file, so each card fills
// in as its answer arrives and one bad file never hides the others. No framework, no build step,
// nothing fetched from anywhere but this server. Text from the server is only ever set as
// textContent, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "deepfake-detect.api-key";
  const MAX_PARALLEL = 3; // the server batches concurrent requests; more would only queue there
  const MAX_BUSY_RETRIES = 3; // 503 (model loading, server busy) is retried after Retry-After
  const MAX_RETRY_WAIT_S = 15;

  const $ = (id) => document.getElementById(id);
  const ui = {
    modelInfo: $("model-info"),
    dropzone: $("dropzone"),
    input: $("file-input"),
    explain: $("explain"),
    faces: $("faces"),
    clear: $("clear"),
    keyForm: $("api-key-form"),
    key: $("api-key"),
    results: $("results"),
    empty: $("empty"),
  };

  const queue = [];
  let running = 0;
  let generation = 0; // bumped by "Clear results": answers to cleared cards are dropped
  const objectUrls = new Set();

  // ---- the API key (only when the server asks for one) ----

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return ""; // storage can be disabled; the page then works without a remembered key
    }
  }

  function storeKey(value) {
    try {
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      /* not remembered; nothing else depends on it */
    }
  }

  function authHeaders() {
    const key = storedKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function askForKey() {
    ui.keyForm.hidden = false;
    ui.key.value = storedKey();
  }

  // ---- small helpers ----

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatProbability(p) {
    if (p > 0 && p < 0.0005) return "< 0.001";
    if (p < 1 && p > 0.9995) return "> 0.999";
    return p.toFixed(3);
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null; // a proxy's HTML error page, an empty body
    }
  }

  function errorDetail(response, body) {
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
    return `the server answered ${response.status} ${response.statusText}`.trim();
  }

  function retryAfterSeconds(response) {
    const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(value) && value >= 0 ? Math.min(value, MAX_RETRY_WAIT_S) : 1;
  }

  const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

  // ---- the model card in the header ----

  async function loadModel() {
    let response;
    try {
      response = await fetch("/v1/model", { headers: authHeaders() });
    } catch {
      showModelProblem("Model information unavailable: the server cannot be reached.");
      return;
    }
    const body = await readJson(response);
    if (response.status === 401) {
      askForKey();
      showModelProblem("This server needs an API key: enter it below.");
      return;
    }
    if (response.status === 503) {
      showModelProblem(`Model not ready: ${errorDetail(response, body)}`);
      setTimeout(loadModel, retryAfterSeconds(response) * 1000);
      return;
    }
    if (!response.ok || !body) {
      showModelProblem(`Model information unavailable: ${errorDetail(response, body)}`);
      return;
    }
    showModel(body);
  }

  function showModelProblem(text) {
    ui.modelInfo.classList.add("is-problem");
    ui.modelInfo.textContent = text;
  }

  function showModel(card) {
    ui.modelInfo.classList.remove("is-problem");
    ui.modelInfo.replaceChildren();
    const name = el("span", "model-name", card.name || "model");
    const parts = [name];
    if (card.version) parts.push(el("span", "model-part", `v${card.version}`));
    if (typeof card.threshold === "number") {
      parts.push(el("span", "model-part", `threshold ${formatProbability(card.threshold)}`));
    }
    if (card.backbone) parts.push(el("span", "model-part", card.backbone));
    if (card.weights_sha256) {
      const hash = el("span", "model-part model-hash", `weights ${card.weights_sha256.slice(0, 12)}`);
      hash.title = `sha256 ${card.weights_sha256}`;
      parts.push(hash);
    }
    ui.modelInfo.append(...parts);
    ui.keyForm.hidden = true;
  }

  // ---- one card per file ----

  function createCard(file) {
    const card = el("li", "card");
    card.dataset.testid = "result";
    card.dataset.state = "pending";
    card.dataset.filename = file.name;
    card.setAttribute("aria-busy", "true");

    const media = el("div", "card-media");
    const original = el("img", "media-original");
    original.alt = `The uploaded image ${file.name}`;
    original.decoding = "async";
    const url = URL.createObjectURL(file);
    objectUrls.add(url);
    original.addEventListener("error", () => {
      // a format this browser cannot show (HEIC, TIFF) or not an image at all
      media.classList.add("no-original");
    });
    original.src = url;
    const heatmap = el("img", "media-heatmap");
    heatmap.dataset.testid = "heatmap";
    heatmap.alt = `Heat-map of where the model looked, over ${file.name}`;
    heatmap.hidden = true;
    const noPreview = el("p", "no-preview muted small", "No preview");
    const toggle = el("button", "button button-small media-toggle", "Show original");
    toggle.type = "button";
    toggle.hidden = true;
    toggle.setAttribute("aria-pressed", "false");
    toggle.dataset.testid = "toggle-original";
    toggle.addEventListener("click", () => {
      const showOriginal = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(showOriginal));
      toggle.textContent = showOriginal ? "Show heat-map" : "Show original";
      media.classList.toggle("showing-original", showOriginal);
    });
    media.append(original, heatmap, noPreview, toggle);

    const body = el("div", "card-body");
    const name = el("p", "filename", file.name);
    name.title = file.name;
    const verdict = el("p", "verdict is-pending");
    verdict.dataset.testid = "verdict";
    verdict.append(el("span", "spinner"), el("span", "", "Scoring…"));
    body.append(name, verdict);

    card.append(media, body);
    return { card, media, original, heatmap, toggle, body, verdict, file };
  }

  function showResult(view, result) {
    const { card, body, verdict } = view;
    card.dataset.state = "done";
    card.dataset.label = result.label;
    card.dataset.score = String(result.score);
    card.removeAttribute("aria-busy");
    card.classList.add(`is-${result.label}`);

    verdict.className = `verdict is-${result.label}`;
    verdict.replaceChildren(
      el("span", "verdict-text", result.label === "fake" ? "Likely fake" : "Likely real"),
      el("span", "verdict-label", `label: ${result.label}`),
    );

    const numbers = `P(fake) ${formatProbability(result.score)} — threshold ${formatProbability(
      result.threshold,
    )}`;
    body.append(probabilityBar(result.score, result.threshold, numbers));
    const text = el("p", "numbers", numbers);
    text.dataset.testid = "numbers";
    body.append(text);

    if (result.image) {
      const { width, height, format, bytes } = result.image;
      body.append(el("p", "facts muted small", `${width}×${height} ${format} · ${formatBytes(bytes)}`));
    }
    if (result.faces && result.faces.length && result.image) showFaces(view, result);
    if (result.frames) body.append(framesLine(result));
    if (result.provenance) body.append(provenanceLine(result.provenance));
    showWarnings(body, result.warnings || []);
    if (result.heatmap_png) showHeatmap(view, result.heatmap_png);
  }

  // Each face's box over the picture, coloured by its own verdict. The picture is shown
  // contained in a 4:3 box, so a box's place is computed as a share of that box.
  function showFaces(view, result) {
    const { width, height } = result.image;
    const scale = Math.min(4 / width, 3 / height);
    const left = (4 - width * scale) / 2;
    const top = (3 - height * scale) / 2;
    const layer = el("div", "face-layer");
    layer.dataset.testid = "faces";
    for (const face of result.faces) {
      const [x1, y1, x2, y2] = face.box;
      const box = el("div", `face-box is-${face.label}`);
      box.dataset.testid = "face-box";
      box.dataset.label = face.label;
      box.title = `face ${face.face}: P(fake) ${formatProbability(face.score)}`;
      box.style.setProperty("--x", String(((left + x1 * scale) / 4) * 100));
      box.style.setProperty("--y", String(((top + y1 * scale) / 3) * 100));
      box.style.setProperty("--w", String((((x2 - x1) * scale) / 4) * 100));
      box.style.setProperty("--h", String((((y2 - y1) * scale) / 3) * 100));
      box.append(el("span", "face-tag", `${face.face}: ${face.label}`));
      layer.append(box);
    }
    view.media.append(layer);
    const list = el("p", "faces-line small");
    const parts = result.faces.map(
      (f) => `face ${f.face}: ${f.label} (${formatProbability(f.score)})`
    );
    if (result.whole_score != null) {
      const label = result.whole_score >= result.threshold ? "fake" : "real";
      parts.unshift(`whole image: ${label} (${formatProbability(result.whole_score)})`);
    }
    list.dataset.testid = "faces-line";
    list.textContent = parts.join(" · ");
    view.body.append(list);
  }

  function framesLine(result) {
    const line = el("p", "frames-line small");
    line.dataset.testid = "frames";
    line.textContent =
      `Video: the mean of ${result.frames.length} frames; the highest frame ` +
      `P(fake) ${formatProbability(result.max_score)}`;
    return line;
  }

  // What the file's metadata claims: a separate signal, shown apart from the verdict
  function provenanceLine(provenance) {
    const claimed = provenance.ai_claimed;
    const line = el("p", `provenance small${claimed ? " is-claimed" : " muted"}`);
    line.dataset.testid = "provenance";
    const text =
      provenance.summary === "none"
        ? "Provenance: the file claims nothing about its origin (no evidence either way)"
        : `Provenance: ${provenance.summary}`;
    line.append(el("span", "", text));
    return line;
  }

  function probabilityBar(score, threshold, label) {
    const bar = el("div", "bar");
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", String(score));
    bar.setAttribute("aria-valuetext", label);
    bar.setAttribute("aria-label", "Probability that the image is fake");
    bar.dataset.testid = "bar";
    const fill = el("div", "bar-fill");
    const marker = el("div", "bar-threshold");
    marker.title = `threshold ${formatProbability(threshold)}`;
    // custom properties set from script: no inline style attribute, so a strict CSP still holds
    bar.style.setProperty("--score", String(Math.min(Math.max(score, 0), 1)));
    bar.style.setProperty("--threshold", String(Math.min(Math.max(threshold, 0), 1)));
    bar.append(fill, marker);
    return bar;
  }

  function showWarnings(body, warnings) {
    if (!warnings.length) return;
    const list = el("ul", "warnings");
    list.dataset.testid = "warnings";
    list.setAttribute("aria-label", "Warnings");
    for (const warning of warnings) list.append(el("li", "", warning));
    body.append(list);
  }

  function showHeatmap(view, base64Png) {
    const { media, heatmap, toggle } = view;
    heatmap.src = `data:image/png;base64,${base64Png}`;
    heatmap.hidden = false;
    media.classList.add("has-heatmap");
    toggle.hidden = false;
  }

  function showError(view, message, retry) {
    const { card, body, verdict } = view;
    card.dataset.state = "error";
    card.removeAttribute("aria-busy");
    card.classList.add("is-error");
    verdict.className = "verdict is-error";
    verdict.replaceChildren(el("span", "verdict-text", "Not scored"));
    const error = el("p", "error", message);
    error.dataset.testid = "error";
    body.append(error);
    if (retry) {
      const again = el("button", "button button-small", "Try again");
      again.type = "button";
      again.addEventListener("click", () => {
        resetCard(view);
        enqueue(() => score(view, generation));
      });
      body.append(again);
    }
  }

  function resetCard(view) {
    const { card, body, verdict } = view;
    view.media.querySelector(".face-layer")?.remove();
    card.className = "card";
    card.dataset.state = "pending";
    delete card.dataset.status;
    card.setAttribute("aria-busy", "true");
    body.replaceChildren(body.firstElementChild, verdict);
    verdict.className = "verdict is-pending";
    verdict.replaceChildren(el("span", "spinner"), el("span", "", "Scoring…"));
  }

  // ---- requests ----

  async function score(view, cardGeneration) {
    const explain = ui.explain.checked;
    // auto: the faces that are a small part of the picture, and the whole picture beside
    // them (a face crop alone misses much of what gives a generated portrait away)
    const faces = ui.faces.checked ? "auto" : "off";
    for (let attempt = 0; ; attempt += 1) {
      const form = new FormData();
      form.append("file", view.file, view.file.name);
      let response;
      try {
        response = await fetch(`/v1/predict?explain=${explain}&faces=${faces}`, {
          method: "POST",
          body: form,
          headers: authHeaders(),
        });
      } catch {
        if (cardGeneration !== generation) return;
        showError(view, "Could not reach the server (network error). Check the connection.", true);
        return;
      }
      const body = await readJson(response);
      if (cardGeneration !== generation) return;
      if (response.status === 503 && attempt < MAX_BUSY_RETRIES) {
        await sleep(retryAfterSeconds(response));
        continue;
      }
      if (response.status === 401) {
        askForKey();
        showError(view, "This server needs an API key: enter it above, then try again.", true);
        view.card.dataset.status = "401";
        return;
      }
      if (!response.ok) {
        showError(view, errorDetail(response, body), response.status === 503);
        return;
      }
      const result = body && Array.isArray(body.results) ? body.results[0] : null;
      if (!result) {
        showError(view, "The server's answer had no result for this file.", true);
      } else if (result.error) {
        showError(view, result.error.detail || `refused (${result.error.status})`, false);
      } else {
        showResult(view, result);
      }
      return;
    }
  }

  function enqueue(job) {
    queue.push(job);
    pump();
  }

  function pump() {
    while (running < MAX_PARALLEL && queue.length) {
      const job = queue.shift();
      running += 1;
      job().finally(() => {
        running -= 1;
        pump();
      });
    }
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const batch = document.createDocumentFragment();
    const views = files.map(createCard);
    for (const view of views) batch.append(view.card);
    ui.results.prepend(batch); // the newest choice on top, in the order it was chosen
    ui.empty.hidden = true;
    ui.clear.hidden = false;
    const cardGeneration = generation;
    for (const view of views) enqueue(() => score(view, cardGeneration));
  }

  function clearResults() {
    generation += 1;
    queue.length = 0;
    for (const url of objectUrls) URL.revokeObjectURL(url);
    objectUrls.clear();
    ui.results.replaceChildren();
    ui.empty.hidden = false;
    ui.clear.hidden = true;
    ui.input.focus();
  }

  // ---- wiring ----

  ui.input.addEventListener("change", () => {
    addFiles(ui.input.files);
    ui.input.value = ""; // choosing the same file again is a new change
  });

  ui.dropzone.addEventListener("click", (event) => {
    if (event.target === ui.dropzone || event.target.classList.contains("dropzone-hint")) {
      ui.input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    ui.dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      ui.dropzone.classList.add("is-dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    ui.dropzone.addEventListener(type, (event) => {
      if (!ui.dropzone.contains(event.relatedTarget)) ui.dropzone.classList.remove("is-dragging");
    });
  }
  ui.dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropzone.classList.remove("is-dragging");
    addFiles(event.dataTransfer && event.dataTransfer.files);
  });
  // a file dropped beside the zone would otherwise make the browser leave the page to open it
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  ui.clear.addEventListener("click", clearResults);

  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    storeKey(ui.key.value.trim());
    loadModel();
    for (const card of ui.results.querySelectorAll('[data-status="401"] .card-body .button')) {
      card.click(); // retry what the missing key refused
    }
  });

  loadModel();
})();
