// The mask painter's page: paints a mask at the image's full resolution, shows it scaled.
//
// The mask lives in an offscreen canvas exactly as large as the image; only its alpha channel
// matters (opaque = repaint), its colour is just what the overlay shows. The visible canvas is
// the size of the window and draws image and mask through one transform (view.scale, view.x,
// view.y, in CSS pixels), so a picture of several thousand pixels a side costs one full-size
// canvas, not one per step: undo keeps only the rectangle each step changed, before and after.
"use strict";

(() => {
  const MASK_COLOUR = { r: 255, g: 40, b: 80 }; // the overlay's colour; only alpha is saved
  const UNDO_BYTES = 256 * 2 ** 20; // oldest steps are dropped beyond this
  const MIN_SCALE = 0.01;
  const MAX_SCALE = 32;
  const CLOSE_DISTANCE = 8; // CSS px: a polygon click this near its first point closes it

  const $ = (id) => document.getElementById(id);
  const el = {
    view: $("view"),
    stage: $("stage"),
    list: $("images"),
    status: $("status"),
    size: $("size"),
    sizeValue: $("size-value"),
    opacity: $("opacity"),
    zoom: $("zoom"),
    save: $("save"),
    undo: $("undo"),
    redo: $("redo"),
  };
  const viewCtx = el.view.getContext("2d");
  const colour = `rgb(${MASK_COLOUR.r}, ${MASK_COLOUR.g}, ${MASK_COLOUR.b})`;

  const state = {
    entries: [],
    historyDir: ".history",
    entry: null, // the image being edited, as /api/images lists it
    image: null, // ImageBitmap at full resolution
    width: 0,
    height: 0,
    mask: null,
    maskCtx: null,
    backup: null, // the mask as it was when the current stroke began
    backupCtx: null,
    view: { scale: 1, x: 0, y: 0 },
    tool: "brush",
    size: Number(el.size.value),
    opacity: Number(el.opacity.value) / 100,
    undo: [],
    redo: [],
    dirty: false,
    hasMask: false, // a mask file exists on disk: saving replaces it, after asking
    action: null, // the pointer gesture in progress
    polygon: null, // { points: [{x, y}] in image pixels, erase }
    pointer: null, // last pointer position on the canvas, CSS px
    space: false,
    loadToken: 0,
    frame: 0,
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function setStatus(text, kind = "") {
    el.status.textContent = text;
    el.status.className = kind;
  }

  function makeCanvas(width, height) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    return canvas;
  }

  function context(canvas) {
    return canvas.getContext("2d", { willReadFrequently: true });
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return body.message || `${response.status} ${response.statusText}`;
    } catch {
      return `${response.status} ${response.statusText}`;
    }
  }

  const ready = () => state.image !== null && el.stage.dataset.state !== "loading";
  const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

  function canvasPoint(event) {
    const rect = el.view.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  function toImage(point) {
    const v = state.view;
    return { x: (point.x - v.x) / v.scale, y: (point.y - v.y) / v.scale };
  }

  function toCanvas(point) {
    const v = state.view;
    return { x: point.x * v.scale + v.x, y: point.y * v.scale + v.y };
  }

  // ---------------------------------------------------------------------------------------
  // The image list

  async function loadList() {
    const response = await fetch("/api/images");
    if (!response.ok) {
      setStatus(await errorText(response), "error");
      return;
    }
    const data = await response.json();
    state.entries = data.images;
    state.historyDir = data.history;
    const folder = $("folder");
    folder.textContent = `${data.folder.split(/[\\/]/).pop()} (${data.layout})`;
    folder.title = data.folder;
    if (state.entry) {
      state.entry = state.entries.find((e) => e.name === state.entry.name) || state.entry;
    }
    renderList();
  }

  function badge(entry) {
    if (entry.shared_with.length) return ["warn", "name shared"];
    if (entry.masks.length > 1) return ["warn", `${entry.masks.length} masks`];
    if (entry.masks.length === 1) return ["has", "mask"];
    return ["none", "no mask"];
  }

  function renderList() {
    const items = state.entries.map((entry) => {
      const li = document.createElement("li");
      li.dataset.name = entry.name;
      if (state.entry && state.entry.name === entry.name) li.className = "current";
      const button = document.createElement("button");
      button.type = "button";
      button.title = entry.masks.length ? entry.masks.join(", ") : `saves ${entry.target}`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = entry.name;
      const [kind, text] = badge(entry);
      const tag = document.createElement("span");
      tag.className = `badge ${kind}`;
      tag.textContent = text;
      button.append(name, tag);
      button.addEventListener("click", () => selectImage(entry.name));
      li.append(button);
      return li;
    });
    el.list.replaceChildren(...items);
    const withMask = state.entries.filter((e) => e.masks.length > 0).length;
    $("counts").textContent = `${withMask} of ${state.entries.length} images have a mask`;
  }

  // ---------------------------------------------------------------------------------------
  // Loading an image and its mask

  async function selectImage(name) {
    if (state.dirty && !confirm(`Discard the unsaved changes to ${state.entry.name}?`)) return;
    const entry = state.entries.find((e) => e.name === name);
    if (!entry) return;
    const token = ++state.loadToken;
    Object.assign(state, { entry, dirty: false, undo: [], redo: [], polygon: null, action: null });
    renderList();
    updateButtons();
    el.stage.dataset.state = "loading";
    el.stage.dataset.image = name;
    setStatus(`Loading ${name}…`);
    const query = `name=${encodeURIComponent(name)}`;
    try {
      const response = await fetch(`/api/image?${query}`);
      if (!response.ok) throw new Error(await errorText(response));
      const image = await createImageBitmap(await response.blob());
      if (token !== state.loadToken) return;
      useImage(image);
      state.hasMask = entry.masks.length > 0;
      let note = `New mask: Save writes ${entry.target}.`;
      let kind = "";
      if (state.hasMask) {
        const mask = await fetch(`/api/mask?${query}`);
        try {
          if (!mask.ok) throw new Error(await errorText(mask));
          await loadMask(await mask.blob());
          note = `Editing ${entry.masks[0]}.`;
        } catch (error) {
          state.maskCtx.clearRect(0, 0, state.width, state.height);
          note = `${error.message} Starting from an empty mask.`;
          kind = "error";
        }
      }
      if (token !== state.loadToken) return;
      fit();
      el.stage.dataset.state = "ready";
      setStatus(`${name}: ${state.width}×${state.height}. ${note}`, kind);
    } catch (error) {
      if (token !== state.loadToken) return;
      state.image = null;
      el.stage.dataset.state = "error";
      setStatus(`${name}: ${error.message}`, "error");
      requestDraw();
    }
  }

  function useImage(image) {
    if (state.image) state.image.close();
    state.image = image;
    state.width = image.width;
    state.height = image.height;
    state.mask = makeCanvas(image.width, image.height);
    state.maskCtx = context(state.mask);
    state.backup = makeCanvas(image.width, image.height);
    state.backupCtx = context(state.backup);
    el.size.max = String(Math.max(400, Math.round(Math.max(image.width, image.height) / 4)));
  }

  async function loadMask(blob) {
    const bitmap = await createImageBitmap(blob, {
      premultiplyAlpha: "none",
      colorSpaceConversion: "none",
    });
    if (bitmap.width !== state.width || bitmap.height !== state.height) {
      throw new Error(`the mask is ${bitmap.width}×${bitmap.height}, not the image's size`);
    }
    const scratch = context(makeCanvas(state.width, state.height));
    scratch.drawImage(bitmap, 0, 0);
    bitmap.close();
    const data = scratch.getImageData(0, 0, state.width, state.height);
    const pixels = new Uint32Array(data.data.buffer); // RGBA bytes read as little-endian words
    const rgb = (MASK_COLOUR.b << 16) | (MASK_COLOUR.g << 8) | MASK_COLOUR.r;
    for (let i = 0; i < pixels.length; i++) {
      const grey = pixels[i] & 0xff;
      pixels[i] = grey === 0 ? 0 : (grey << 24) | rgb;
    }
    state.maskCtx.putImageData(data, 0, 0);
  }

  // ---------------------------------------------------------------------------------------
  // The view: zoom and pan

  function resizeView() {
    const rect = el.view.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    el.view.width = Math.max(1, Math.round(rect.width * dpr));
    el.view.height = Math.max(1, Math.round(rect.height * dpr));
    requestDraw();
  }

  function fit() {
    if (!state.image) return;
    const rect = el.view.getBoundingClientRect();
    const scale = clamp(
      0.96 * Math.min(rect.width / state.width, rect.height / state.height),
      MIN_SCALE,
      MAX_SCALE,
    );
    setView(scale, (rect.width - state.width * scale) / 2, (rect.height - state.height * scale) / 2);
  }

  function setView(scale, x, y) {
    state.view = { scale, x, y };
    el.zoom.textContent = `${Math.round(scale * 100)}%`;
    requestDraw();
  }

  function zoomAt(factor, point) {
    const v = state.view;
    const scale = clamp(v.scale * factor, MIN_SCALE, MAX_SCALE);
    const anchor = toImage(point);
    setView(scale, point.x - anchor.x * scale, point.y - anchor.y * scale);
  }

  function zoomCentre(factor) {
    const rect = el.view.getBoundingClientRect();
    zoomAt(factor, { x: rect.width / 2, y: rect.height / 2 });
  }

  function actualSize() {
    zoomCentre(1 / state.view.scale);
  }

  // ---------------------------------------------------------------------------------------
  // Drawing on the display

  function requestDraw() {
    if (!state.frame) state.frame = requestAnimationFrame(draw);
  }

  function draw() {
    state.frame = 0;
    const c = viewCtx;
    const dpr = window.devicePixelRatio || 1;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, el.view.width, el.view.height);
    if (!state.image) return;
    const v = state.view;
    c.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.x, dpr * v.y);
    c.imageSmoothingEnabled = v.scale < 1;
    c.drawImage(state.image, 0, 0);
    c.globalAlpha = state.opacity;
    c.drawImage(state.mask, 0, 0);
    c.globalAlpha = 1;
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawGuides(c);
  }

  function drawGuides(c) {
    c.lineWidth = 1.5;
    c.strokeStyle = "#fff";
    c.setLineDash([6, 4]);
    const action = state.action;
    if (action && action.kind === "rect") {
      const a = toCanvas(action.start);
      const b = toCanvas(action.end);
      c.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
    }
    if (state.polygon && state.polygon.points.length) {
      const points = state.polygon.points.map(toCanvas);
      c.beginPath();
      c.moveTo(points[0].x, points[0].y);
      for (const p of points.slice(1)) c.lineTo(p.x, p.y);
      if (state.pointer) c.lineTo(state.pointer.x, state.pointer.y);
      c.stroke();
      c.setLineDash([]);
      c.fillStyle = "#fff";
      for (const p of points) c.fillRect(p.x - 3, p.y - 3, 6, 6);
      c.beginPath();
      c.arc(points[0].x, points[0].y, CLOSE_DISTANCE, 0, 2 * Math.PI);
      c.stroke();
    }
    c.setLineDash([]);
    const brushing = state.tool === "brush" || state.tool === "eraser";
    if (brushing && state.pointer && (!action || action.kind === "stroke")) {
      c.beginPath();
      c.arc(state.pointer.x, state.pointer.y, (state.size / 2) * state.view.scale, 0, 2 * Math.PI);
      c.strokeStyle = "#000";
      c.lineWidth = 3;
      c.stroke();
      c.strokeStyle = "#fff";
      c.lineWidth = 1.5;
      c.stroke();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Changing the mask; every change is one undo step holding the rectangle it touched

  function paintStyle(ctx, erase) {
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.fillStyle = colour;
    ctx.strokeStyle = colour;
  }

  function boxAround(points, pad) {
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const x0 = clamp(Math.floor(Math.min(...xs) - pad), 0, state.width);
    const y0 = clamp(Math.floor(Math.min(...ys) - pad), 0, state.height);
    const x1 = clamp(Math.ceil(Math.max(...xs) + pad), 0, state.width);
    const y1 = clamp(Math.ceil(Math.max(...ys) + pad), 0, state.height);
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  function record(box, before) {
    if (box.w <= 0 || box.h <= 0) return;
    const after = state.maskCtx.getImageData(box.x, box.y, box.w, box.h);
    state.undo.push({ box, before, after });
    state.redo = [];
    let bytes = state.undo.reduce((n, s) => n + s.before.data.length + s.after.data.length, 0);
    while (bytes > UNDO_BYTES && state.undo.length > 1) {
      const dropped = state.undo.shift();
      bytes -= dropped.before.data.length + dropped.after.data.length;
    }
    changed();
  }

  function changed() {
    state.dirty = true;
    if (el.stage.dataset.state === "saved") el.stage.dataset.state = "ready";
    updateButtons();
    requestDraw();
  }

  function applyShape(points, erase, paint) {
    const box = boxAround(points, 2);
    if (box.w <= 0 || box.h <= 0) return;
    const before = state.maskCtx.getImageData(box.x, box.y, box.w, box.h);
    const ctx = state.maskCtx;
    ctx.save();
    paintStyle(ctx, erase);
    paint(ctx);
    ctx.restore();
    record(box, before);
  }

  function strokeSegment(a, b, erase) {
    const ctx = state.maskCtx;
    ctx.save();
    paintStyle(ctx, erase);
    ctx.lineWidth = state.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (a.x === b.x && a.y === b.y) {
      ctx.arc(a.x, a.y, state.size / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.moveTo(a.x, a.y);
      ctx.lineTo(b.x, b.y);
      ctx.stroke();
    }
    ctx.restore();
  }

  function beginStroke(point) {
    state.backupCtx.globalCompositeOperation = "copy";
    state.backupCtx.drawImage(state.mask, 0, 0);
    const erase = state.tool === "eraser";
    state.action = { kind: "stroke", erase, last: point, points: [point] };
    strokeSegment(point, point, erase);
  }

  function continueStroke(point) {
    const action = state.action;
    strokeSegment(action.last, point, action.erase);
    action.last = point;
    action.points.push(point);
  }

  function endStroke(action) {
    const box = boxAround(action.points, state.size / 2 + 2);
    if (box.w > 0 && box.h > 0) {
      record(box, state.backupCtx.getImageData(box.x, box.y, box.w, box.h));
    }
  }

  function commitRect(action) {
    const x0 = clamp(Math.round(Math.min(action.start.x, action.end.x)), 0, state.width);
    const y0 = clamp(Math.round(Math.min(action.start.y, action.end.y)), 0, state.height);
    const x1 = clamp(Math.round(Math.max(action.start.x, action.end.x)), 0, state.width);
    const y1 = clamp(Math.round(Math.max(action.start.y, action.end.y)), 0, state.height);
    if (x1 <= x0 || y1 <= y0) return;
    const corners = [
      { x: x0, y: y0 },
      { x: x1, y: y1 },
    ];
    applyShape(corners, action.erase, (ctx) => ctx.fillRect(x0, y0, x1 - x0, y1 - y0));
  }

  function addPolygonPoint(point, onCanvas, erase) {
    if (!state.polygon) state.polygon = { points: [], erase };
    const points = state.polygon.points;
    if (points.length >= 3) {
      const first = toCanvas(points[0]);
      if (Math.hypot(first.x - onCanvas.x, first.y - onCanvas.y) <= CLOSE_DISTANCE) {
        closePolygon();
        return;
      }
    }
    const last = points.length ? toCanvas(points[points.length - 1]) : null;
    if (last && Math.hypot(last.x - onCanvas.x, last.y - onCanvas.y) < 2) return; // double-click
    points.push(point);
    requestDraw();
  }

  function closePolygon() {
    const polygon = state.polygon;
    if (!polygon) return;
    if (polygon.points.length < 3) {
      setStatus("A polygon needs at least 3 points (Esc cancels it).", "error");
      return;
    }
    state.polygon = null;
    applyShape(polygon.points, polygon.erase, (ctx) => {
      ctx.beginPath();
      ctx.moveTo(polygon.points[0].x, polygon.points[0].y);
      for (const p of polygon.points.slice(1)) ctx.lineTo(p.x, p.y);
      ctx.closePath();
      ctx.fill();
    });
  }

  function undo() {
    if (state.polygon) {
      state.polygon = null; // an unfinished polygon is the last thing done: drop it first
      requestDraw();
      return;
    }
    const step = state.undo.pop();
    if (!step) return;
    state.maskCtx.putImageData(step.before, step.box.x, step.box.y);
    state.redo.push(step);
    changed();
  }

  function redo() {
    const step = state.redo.pop();
    if (!step) return;
    state.maskCtx.putImageData(step.after, step.box.x, step.box.y);
    state.undo.push(step);
    changed();
  }

  function updateButtons() {
    el.undo.disabled = state.undo.length === 0;
    el.redo.disabled = state.redo.length === 0;
  }

  // ---------------------------------------------------------------------------------------
  // Saving: a PNG the size of the image, white = repaint, black = keep

  function maskPng() {
    const { width, height } = state;
    const data = state.maskCtx.getImageData(0, 0, width, height);
    const pixels = new Uint32Array(data.data.buffer);
    for (let i = 0; i < pixels.length; i++) {
      const a = pixels[i] >>> 24;
      pixels[i] = 0xff000000 | (a << 16) | (a << 8) | a;
    }
    const out = makeCanvas(width, height);
    out.getContext("2d").putImageData(data, 0, 0);
    return new Promise((resolve, reject) =>
      out.toBlob(
        (blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode it"))),
        "image/png",
      ),
    );
  }

  function replaceQuestion(entry) {
    const files = entry.masks.length ? entry.masks.join(", ") : entry.target;
    return `${files} already exists. Replace it with this mask? The current file is kept in ${state.historyDir}/.`;
  }

  function postMask(entry, blob, overwrite) {
    const query = `name=${encodeURIComponent(entry.name)}&overwrite=${overwrite}`;
    return fetch(`/api/mask?${query}`, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: blob,
    });
  }

  async function save() {
    if (!ready() || el.stage.dataset.state === "saving") return;
    const entry = state.entry;
    let overwrite = false;
    if (state.hasMask) {
      if (!confirm(replaceQuestion(entry))) return;
      overwrite = true;
    }
    el.stage.dataset.state = "saving";
    setStatus(`Saving the mask of ${entry.name}…`);
    try {
      const blob = await maskPng();
      let response = await postMask(entry, blob, overwrite);
      if (response.status === 409 && !overwrite) {
        const body = await response.json();
        if (body.reason !== "MASK_EXISTS") throw new Error(body.message);
        if (!confirm(replaceQuestion(entry))) throw new Error("Not saved: the mask was kept.");
        response = await postMask(entry, blob, true);
      }
      if (!response.ok) throw new Error(await errorText(response));
      const saved = await response.json();
      state.dirty = false;
      state.hasMask = true;
      entry.masks = [saved.mask];
      renderList();
      el.stage.dataset.state = "saved";
      const kept = saved.history.length ? ` (previous: ${saved.history.join(", ")})` : "";
      setStatus(`Saved ${saved.mask}${kept}.`, "ok");
    } catch (error) {
      el.stage.dataset.state = "ready";
      setStatus(error.message, "error");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Input

  function setTool(tool) {
    state.tool = tool;
    if (tool !== "polygon") state.polygon = null;
    for (const button of document.querySelectorAll("#tools button")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    el.view.style.cursor = tool === "brush" || tool === "eraser" ? "none" : "crosshair";
    requestDraw();
  }

  function setSize(size) {
    state.size = clamp(Math.round(size), 1, Number(el.size.max));
    el.size.value = String(state.size);
    el.sizeValue.textContent = String(state.size);
    requestDraw();
  }

  el.view.addEventListener("pointerdown", (event) => {
    if (!ready()) return;
    const point = canvasPoint(event);
    state.pointer = point;
    if (event.button === 1 || (event.button === 0 && state.space)) {
      state.action = { kind: "pan", start: point, view: { ...state.view } };
    } else if (event.button === 0) {
      const onImage = toImage(point);
      if (state.tool === "brush" || state.tool === "eraser") beginStroke(onImage);
      else if (state.tool === "rect") {
        state.action = { kind: "rect", start: onImage, end: onImage, erase: event.altKey };
      } else if (state.tool === "polygon") addPolygonPoint(onImage, point, event.altKey);
    } else return;
    el.view.setPointerCapture(event.pointerId);
    event.preventDefault();
    requestDraw();
  });

  el.view.addEventListener("pointermove", (event) => {
    const point = canvasPoint(event);
    state.pointer = point;
    const action = state.action;
    if (action && action.kind === "pan") {
      const v = action.view;
      setView(v.scale, v.x + point.x - action.start.x, v.y + point.y - action.start.y);
    } else if (action && action.kind === "stroke") {
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const e of events.length ? events : [event]) continueStroke(toImage(canvasPoint(e)));
    } else if (action && action.kind === "rect") {
      action.end = toImage(point);
    }
    requestDraw();
  });

  function endAction() {
    const action = state.action;
    state.action = null;
    if (!action) return;
    if (action.kind === "stroke") endStroke(action);
    else if (action.kind === "rect") commitRect(action);
    requestDraw();
  }

  el.view.addEventListener("pointerup", endAction);
  el.view.addEventListener("pointercancel", endAction);
  el.view.addEventListener("pointerleave", () => {
    state.pointer = null;
    requestDraw();
  });
  el.view.addEventListener("dblclick", () => {
    if (state.tool === "polygon") closePolygon();
  });
  el.view.addEventListener("contextmenu", (event) => event.preventDefault());
  el.view.addEventListener(
    "wheel",
    (event) => {
      if (!state.image) return;
      event.preventDefault();
      zoomAt(Math.exp(-event.deltaY * 0.002), canvasPoint(event));
    },
    { passive: false },
  );

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type !== "range") return;
    const key = event.key.toLowerCase();
    const mod = event.ctrlKey || event.metaKey;
    if (mod && key === "z") {
      event.preventDefault();
      if (event.shiftKey) redo();
      else undo();
    } else if (mod && key === "y") {
      event.preventDefault();
      redo();
    } else if (mod && key === "s") {
      event.preventDefault();
      save();
    } else if (mod || event.altKey) {
      return;
    } else if (key === " ") {
      state.space = true;
      event.preventDefault();
    } else {
      const actions = {
        b: () => setTool("brush"),
        e: () => setTool("eraser"),
        r: () => setTool("rect"),
        p: () => setTool("polygon"),
        "+": () => zoomCentre(1.25),
        "=": () => zoomCentre(1.25),
        "-": () => zoomCentre(0.8),
        0: fit,
        1: actualSize,
        "[": () => setSize(state.size / 1.25),
        "]": () => setSize(Math.max(state.size + 1, state.size * 1.25)),
        enter: closePolygon,
        escape: () => {
          state.polygon = null;
          state.action = null;
          requestDraw();
        },
        backspace: () => {
          if (state.polygon) state.polygon.points.pop();
          requestDraw();
        },
      };
      if (actions[key]) {
        event.preventDefault();
        actions[key]();
      }
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " ") state.space = false;
  });

  for (const button of document.querySelectorAll("#tools button")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  el.size.addEventListener("input", () => setSize(Number(el.size.value)));
  el.opacity.addEventListener("input", () => {
    state.opacity = Number(el.opacity.value) / 100;
    requestDraw();
  });
  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.save.addEventListener("click", save);
  $("zoom-in").addEventListener("click", () => zoomCentre(1.25));
  $("zoom-out").addEventListener("click", () => zoomCentre(0.8));
  $("zoom-fit").addEventListener("click", fit);
  $("zoom-1").addEventListener("click", actualSize);
  $("reload").addEventListener("click", loadList);
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty) event.preventDefault();
  });
  new ResizeObserver(resizeView).observe(el.stage);

  // What a test (or a curious user in the console) can read: the transform from image pixels
  // to canvas CSS pixels is canvas = image * scale + (x, y).
  window.painter = {
    get view() {
      return { ...state.view };
    },
    get imageSize() {
      return [state.width, state.height];
    },
    get brushSize() {
      return state.size;
    },
    get dirty() {
      return state.dirty;
    },
  };

  setTool("brush");
  setSize(state.size);
  updateButtons();
  loadList();
})();
