// edgefill web app: paint a mask, check and edit the predicted edges, inpaint, compare.
//
// Hand-written, no build step, no outside requests. The photo is kept at full resolution: the
// mask and edge layers are canvases of the photo's size, the view canvas only shows them scaled.
// Layers are white strokes on transparent; they are exported as white-on-black PNGs.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const view = $("view");
  const vctx = view.getContext("2d");
  const stage = $("stage");
  const scratch = document.createElement("canvas"); // view-sized, for tinting layers
  const sctx = scratch.getContext("2d");

  const COLORS = {
    mask: "#ff3d7f",
    hole: "#ff3d7f",
    edgeInside: "#4ff0ff",
    edgeOutside: "#ffffff",
  };
  const MIN_SIZE = 2;
  const MAX_SIZE = 200;

  const state = {
    photoFile: null, // Blob sent to the server (the original file: full resolution, EXIF intact)
    photoName: "photo",
    photo: null, // ImageBitmap for display
    W: 0,
    H: 0,
    view: "mask",
    tool: "brush",
    sizes: { mask: 40, edges: 4 }, // brush sizes in screen pixels
    mask: null, // Layer
    edges: null, // Layer (base = edge map from the server)
    maskVersion: 0,
    edgesVersion: -1, // maskVersion the edge base was predicted for
    maskHasPixels: false,
    result: null, // {blob, bitmap, usedEdges, seconds}
    compare: 0.5,
    vt: { s: 1, x: 0, y: 0 }, // view transform: client = x + image * s (CSS pixels)
    fitted: true,
    busy: false,
    abort: null,
    limits: { max_upload_bytes: 64 * 2 ** 20, max_pixels: 40e6 },
    spaceDown: false,
  };

  // ------------------------------------------------------------------------ canvases & layers

  function makeCanvas(w, h) {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    return c;
  }

  function drawStroke(ctx, op) {
    ctx.save();
    ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineWidth = op.width;
    ctx.lineCap = ctx.lineJoin = "round";
    const p = op.points;
    if (p.length === 1) {
      ctx.beginPath();
      ctx.arc(p[0][0], p[0][1], op.width / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(p[0][0], p[0][1]);
      for (let i = 1; i < p.length; i++) ctx.lineTo(p[i][0], p[i][1]);
      ctx.stroke();
    }
    ctx.restore();
  }

  // A full-resolution layer rebuilt from a list of operations, which gives undo/redo cheaply.
  class Layer {
    constructor(w, h) {
      this.canvas = makeCanvas(w, h);
      this.ctx = this.canvas.getContext("2d", { willReadFrequently: false });
      this.base = null; // canvas drawn before the operations ("reset" returns to it)
      this.ops = [];
      this.undone = [];
    }
    apply(op) {
      const ctx = this.ctx;
      if (op.type === "stroke") drawStroke(ctx, op);
      else if (op.type === "reset" || op.type === "image") {
        ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
        const src = op.type === "image" ? op.canvas : this.base;
        if (src) ctx.drawImage(src, 0, 0);
      }
    }
    render() {
      this.apply({ type: "reset" });
      for (const op of this.ops) this.apply(op);
    }
    push(op, applied = false) {
      this.ops.push(op);
      this.undone = [];
      if (!applied) this.apply(op);
    }
    undo() {
      if (!this.ops.length) return false;
      this.undone.push(this.ops.pop());
      this.render();
      return true;
    }
    redo() {
      if (!this.undone.length) return false;
      const op = this.undone.pop();
      this.ops.push(op);
      this.apply(op);
      return true;
    }
    // White-on-black PNG of the photo's size; binary=true makes every painted pixel 255.
    toBlob(binary) {
      const c = makeCanvas(this.canvas.width, this.canvas.height);
      const ctx = c.getContext("2d", { willReadFrequently: binary });
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.drawImage(this.canvas, 0, 0);
      if (binary) {
        const img = ctx.getImageData(0, 0, c.width, c.height);
        const d = img.data;
        for (let i = 0; i < d.length; i += 4) {
          const v = d[i] > 0 ? 255 : 0;
          d[i] = d[i + 1] = d[i + 2] = v;
        }
        ctx.putImageData(img, 0, 0);
      }
      return new Promise((resolve) => c.toBlob(resolve, "image/png"));
    }
    // Whether any pixel is painted: halving keeps thin strokes visible at a small size.
    hasPixels() {
      let src = this.canvas;
      let w = src.width;
      let h = src.height;
      while (w > 512 || h > 512) {
        w = Math.max(1, Math.ceil(w / 2));
        h = Math.max(1, Math.ceil(h / 2));
        const c = makeCanvas(w, h);
        c.getContext("2d").drawImage(src, 0, 0, w, h);
        src = c;
      }
      const c = makeCanvas(w, h);
      const ctx = c.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(src, 0, 0);
      const d = ctx.getImageData(0, 0, w, h).data;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
      return false;
    }
  }

  // A gray PNG (white = 255) as a white layer whose alpha is the gray value.
  async function grayToAlpha(blob, w, h, binary) {
    const bmp = await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    if (bmp.width !== w || bmp.height !== h) {
      const size = `${bmp.width}×${bmp.height}`;
      bmp.close();
      throw new UserError(`it is ${size} but the photo is ${w}×${h}; they must be the same size`);
    }
    const c = makeCanvas(w, h);
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    const img = ctx.getImageData(0, 0, w, h);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      let v = Math.max(d[i], d[i + 1], d[i + 2]);
      v = Math.round((v * d[i + 3]) / 255);
      if (binary) v = v > 0 ? 255 : 0;
      d[i] = d[i + 1] = d[i + 2] = 255;
      d[i + 3] = v;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  // ------------------------------------------------------------------------ view transform

  function viewSize() {
    return { w: view.clientWidth, h: view.clientHeight };
  }

  function fit() {
    if (!state.photo) return;
    const { w, h } = viewSize();
    const pad = w < 600 ? 8 : 24;
    const s = Math.min((w - 2 * pad) / state.W, (h - 2 * pad) / state.H, 16);
    state.vt = { s, x: (w - state.W * s) / 2, y: (h - state.H * s) / 2 };
    state.fitted = true;
    requestRender();
  }

  function zoomAt(cx, cy, factor) {
    const vt = state.vt;
    const { w, h } = viewSize();
    const fitS = Math.min(w / state.W, h / state.H);
    const s = Math.min(Math.max(vt.s * factor, fitS * 0.5), Math.max(32, fitS));
    state.vt = { s, x: cx - ((cx - vt.x) * s) / vt.s, y: cy - ((cy - vt.y) * s) / vt.s };
    state.fitted = false;
    requestRender();
    updateCursor();
  }

  function toImage(clientX, clientY) {
    const r = view.getBoundingClientRect();
    const vt = state.vt;
    return [(clientX - r.left - vt.x) / vt.s, (clientY - r.top - vt.y) / vt.s];
  }

  function toClient(ix, iy) {
    const r = view.getBoundingClientRect();
    const vt = state.vt;
    return [r.left + vt.x + ix * vt.s, r.top + vt.y + iy * vt.s];
  }

  function resizeView() {
    const dpr = window.devicePixelRatio || 1;
    const { w, h } = viewSize();
    const pw = Math.max(1, Math.round(w * dpr));
    const ph = Math.max(1, Math.round(h * dpr));
    if (view.width !== pw || view.height !== ph) {
      view.width = scratch.width = pw;
      view.height = scratch.height = ph;
    }
    if (state.fitted) fit();
    else requestRender();
  }

  // ------------------------------------------------------------------------ rendering

  let renderPending = false;
  function requestRender() {
    if (!renderPending) {
      renderPending = true;
      requestAnimationFrame(render);
    }
  }

  function imageRect() {
    const vt = state.vt;
    return [vt.x, vt.y, state.W * vt.s, state.H * vt.s];
  }

  // Draws `src` (a full-size layer) as a solid colour at `alpha`; `clip` keeps (in) or removes
  // (out) the part under another layer.
  function drawTinted(src, color, alpha, clip, clipMode) {
    const dpr = window.devicePixelRatio || 1;
    const smooth = state.vt.s < 2;
    sctx.setTransform(1, 0, 0, 1, 0, 0);
    sctx.globalCompositeOperation = "source-over";
    sctx.clearRect(0, 0, scratch.width, scratch.height);
    sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    sctx.imageSmoothingEnabled = smooth;
    const rect = imageRect();
    sctx.drawImage(src, ...rect);
    sctx.globalCompositeOperation = "source-in";
    sctx.fillStyle = color;
    sctx.fillRect(...rect);
    if (clip) {
      sctx.globalCompositeOperation = clipMode === "out" ? "destination-out" : "destination-in";
      sctx.drawImage(clip, ...rect);
    }
    vctx.save();
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    vctx.globalAlpha = alpha;
    vctx.drawImage(scratch, 0, 0);
    vctx.restore();
  }

  function render() {
    renderPending = false;
    const dpr = window.devicePixelRatio || 1;
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    vctx.clearRect(0, 0, view.width, view.height);
    placeCompareHandle();
    if (!state.photo) return;
    vctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    vctx.imageSmoothingEnabled = state.vt.s < 2;
    vctx.imageSmoothingQuality = "high";
    const rect = imageRect();
    vctx.save();
    vctx.shadowColor = "rgba(0,0,0,0.5)";
    vctx.shadowBlur = 18;
    vctx.fillStyle = "#000";
    vctx.fillRect(...rect);
    vctx.restore();

    if (state.view === "result" && state.result) {
      const split = rect[0] + rect[2] * state.compare;
      vctx.save();
      vctx.beginPath();
      vctx.rect(rect[0], rect[1], split - rect[0], rect[3]);
      vctx.clip();
      vctx.drawImage(state.photo, ...rect);
      vctx.restore();
      vctx.save();
      vctx.beginPath();
      vctx.rect(split, rect[1], rect[0] + rect[2] - split, rect[3]);
      vctx.clip();
      vctx.drawImage(state.result.bitmap, ...rect);
      vctx.restore();
      return;
    }

    vctx.drawImage(state.photo, ...rect);
    if (state.view === "edges") {
      vctx.fillStyle = "rgba(10, 12, 16, 0.72)";
      vctx.fillRect(...rect);
      drawTinted(state.mask.canvas, COLORS.hole, 0.22);
      if (state.edges.base) {
        drawTinted(state.edges.base, COLORS.edgeOutside, 0.55, state.mask.canvas, "out");
        drawTinted(state.edges.canvas, COLORS.edgeInside, 1, state.mask.canvas, "in");
      }
    } else {
      drawTinted(state.mask.canvas, COLORS.mask, 0.55);
    }
  }

  function placeCompareHandle() {
    const handle = $("compare-handle");
    const labels = $("compare-labels");
    const show = state.view === "result" && !!state.result && !!state.photo;
    handle.hidden = labels.hidden = !show;
    if (!show) return;
    const [x, y, w, h] = imageRect();
    const { w: vw, h: vh } = viewSize();
    const top = Math.max(0, y);
    const bottom = Math.min(vh, y + h);
    handle.style.left = `${x + w * state.compare}px`;
    handle.style.top = `${top}px`;
    handle.style.height = `${Math.max(0, bottom - top)}px`;
    handle.setAttribute("aria-valuenow", String(Math.round(state.compare * 100)));
    labels.style.left = `${Math.max(0, x)}px`;
    labels.style.width = `${Math.min(vw, x + w) - Math.max(0, x)}px`;
    labels.style.top = `${top}px`;
  }

  // ------------------------------------------------------------------------ UI state

  function setView(name) {
    if (name === "edges" && !state.maskHasPixels) return;
    if (name === "result" && !state.result) return;
    state.view = name;
    document.body.dataset.view = name;
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      tab.setAttribute("aria-selected", String(tab.dataset.view === name));
    }
    for (const label of document.querySelectorAll("[data-" + name + "]")) {
      label.textContent = label.dataset[name];
    }
    for (const label of document.querySelectorAll(".label[data-mask]")) {
      if (!(name in label.dataset)) label.textContent = label.dataset.mask;
    }
    $("brush-size").value = state.sizes[name === "edges" ? "edges" : "mask"];
    $("brush-size-out").value = $("brush-size").value;
    $("clear").title = name === "edges" ? "Back to the predicted edges" : "Clear the mask";
    const hints = {
      mask: "Paint over everything that should be filled",
      edges: "Draw or erase the lines inside the hole, then inpaint with these edges",
      result: "Drag across the photo to compare before and after",
    };
    showHint(hints[name]);
    refreshUI();
    requestRender();
    updateCursor();
    if (name === "edges") ensureEdges().catch(reportError);
  }

  function refreshUI() {
    const has = !!state.photo;
    const busy = state.busy;
    document.body.classList.toggle("no-photo", !has);
    document.body.classList.toggle("is-busy", busy);
    $("dropzone").hidden = has;
    $("tab-mask").disabled = !has || busy;
    $("tab-edges").disabled = !has || busy || !state.maskHasPixels;
    $("tab-result").disabled = !has || busy || !state.result;
    const layer = currentLayer();
    $("undo").disabled = busy || !layer || !layer.ops.length;
    $("redo").disabled = busy || !layer || !layer.undone.length;
    $("clear").disabled = busy || !layer || !layer.ops.length;
    $("load-mask").disabled = busy || !has;
    $("detect-damage").disabled = busy || !has;
    $("fit").disabled = !has;
    $("inpaint").disabled = busy || !has || !state.maskHasPixels;
    $("download-result").disabled = !state.result;
    $("download-mask").disabled = !has || !state.maskHasPixels;
    $("keep-result").disabled = busy || !state.result;
    $("show-edges-again").disabled = busy || !state.maskHasPixels;
    $("open-photo").disabled = busy;
    for (const b of ["tool-brush", "tool-eraser"]) {
      $(b).setAttribute("aria-pressed", String(b === "tool-" + state.tool));
    }
  }

  function currentLayer() {
    if (state.view === "mask") return state.mask;
    if (state.view === "edges" && state.edges && state.edges.base) return state.edges;
    return null;
  }

  let hintTimer = 0;
  function showHint(text) {
    const el = $("view-hint");
    clearTimeout(hintTimer);
    if (!text || !state.photo) {
      el.hidden = true;
      return;
    }
    el.textContent = text;
    el.hidden = false;
    el.classList.remove("fade");
    hintTimer = setTimeout(() => el.classList.add("fade"), 4000);
  }

  let toastTimer = 0;
  function toast(message, kind = "info") {
    const el = $("toast");
    el.textContent = message;
    el.className = kind;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 9000 : 3500);
  }

  class UserError extends Error {}
  class Cancelled extends Error {}

  function reportError(err) {
    if (err instanceof Cancelled) {
      toast("Cancelled");
      return;
    }
    if (!(err instanceof UserError)) console.error(err);
    toast(err.message || String(err), "error");
  }

  let busyTimer = 0;
  function setBusy(text) {
    state.busy = !!text;
    const el = $("busy");
    el.hidden = !text;
    stage.setAttribute("aria-busy", String(!!text));
    clearInterval(busyTimer);
    if (text) {
      $("toast").hidden = true; // an old message must not look like news about this run
      $("busy-text").textContent = text;
      const t0 = performance.now();
      $("busy-time").textContent = "";
      busyTimer = setInterval(() => {
        $("busy-time").textContent = `${Math.round((performance.now() - t0) / 1000)} s`;
      }, 500);
    }
    refreshUI();
  }

  function setStatus() {
    const parts = [];
    if (state.photo) parts.push(`${state.photoName} · ${state.W}×${state.H}`);
    if (state.result && state.result.seconds) parts.push(`last fill ${state.result.seconds} s`);
    $("status-line").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------------ server calls

  function errorText(detail, status) {
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(-1)[0] || "request"}: ${d.msg}`).join("; ");
    }
    return detail || `the server answered ${status}`;
  }

  async function post(path, form, label) {
    const ctrl = new AbortController();
    state.abort = ctrl;
    setBusy(label);
    try {
      let resp;
      try {
        resp = await fetch(path, { method: "POST", body: form, signal: ctrl.signal });
      } catch (e) {
        if (e.name === "AbortError") throw new Cancelled("cancelled");
        throw new UserError("Cannot reach the edgefill server. Is `edgefill serve` still running?");
      }
      if (!resp.ok) {
        let detail = null;
        try {
          detail = (await resp.json()).detail;
        } catch (e) {
          detail = null;
        }
        throw new UserError(errorText(detail, resp.status));
      }
      const blob = await resp.blob();
      return { blob, seconds: resp.headers.get("X-Edgefill-Seconds"), headers: resp.headers };
    } catch (e) {
      if (e.name === "AbortError") throw new Cancelled("cancelled");
      throw e;
    } finally {
      state.abort = null;
      setBusy(null);
    }
  }

  async function baseForm() {
    const form = new FormData();
    form.append("photo", state.photoFile, state.photoName);
    form.append("mask", await state.mask.toBlob(true), "mask.png");
    return form;
  }

  async function ensureEdges() {
    if (!state.photo || !state.maskHasPixels) return;
    if (state.edgesVersion === state.maskVersion && state.edges.base) return;
    const version = state.maskVersion;
    const { blob } = await post("/api/edges", await baseForm(), "Predicting edges…");
    state.edges.base = await grayToAlpha(blob, state.W, state.H, false);
    state.edges.render(); // keeps the user's edge strokes on top of the new prediction
    state.edgesVersion = version;
    refreshUI();
    requestRender();
  }

  async function inpaint() {
    if (!state.photo || state.busy || !state.maskHasPixels) return;
    const useEdges =
      state.view === "edges" || (state.view === "result" && state.result && state.result.usedEdges);
    try {
      if (useEdges) await ensureEdges();
      const form = await baseForm();
      if (useEdges) form.append("edges", await state.edges.toBlob(false), "edges.png");
      const { blob, seconds } = await post("/api/inpaint", form, "Filling the hole…");
      const bitmap = await createImageBitmap(blob);
      if (state.result) state.result.bitmap.close();
      state.result = { blob, bitmap, usedEdges: useEdges, seconds };
      state.compare = 0.5;
      setStatus();
      setView("result");
      toast(useEdges ? "Filled, following your edges" : "Filled");
    } catch (e) {
      reportError(e);
    }
  }

  // Mark scratches, folds, dust and spots found by the server's detector: added to what is
  // painted already, as one undoable mask step the user can then paint over or erase.
  async function detectDamage() {
    if (!state.photo || state.busy) return;
    try {
      const form = new FormData();
      form.append("photo", state.photoFile, state.photoName);
      const { blob, headers } = await post("/api/detect", form, "Looking for scratches and dust…");
      const found = await grayToAlpha(blob, state.W, state.H, true);
      const merged = makeCanvas(state.W, state.H);
      const ctx = merged.getContext("2d");
      ctx.drawImage(state.mask.canvas, 0, 0);
      ctx.drawImage(found, 0, 0);
      state.mask.push({ type: "image", canvas: merged });
      maskChanged();
      if (state.view !== "mask") setView("mask");
      const share = Number(headers.get("X-Edgefill-Damage-Fraction") || 0);
      toast(
        share > 0
          ? `Marked ${(share * 100).toFixed(share < 0.001 ? 2 : 1)} % of the photo as damaged: ` +
              "check it, paint what was missed, erase what is not damage"
          : "No scratches or dust found; paint the damage by hand",
      );
    } catch (e) {
      reportError(e);
    }
  }

  async function loadHealth() {
    try {
      const r = await fetch("/api/health");
      const h = await r.json();
      state.limits = { max_upload_bytes: h.max_upload_bytes, max_pixels: h.max_pixels };
      if (h.status !== "ok") toast(`The model is not available: ${h.detail}`, "error");
      $("detect-damage").hidden = !h.detect;
    } catch (e) {
      toast("Cannot reach the edgefill server. Is `edgefill serve` still running?", "error");
    }
  }

  // ------------------------------------------------------------------------ files

  function baseName() {
    return state.photoName.replace(/\.[^.]*$/, "") || "photo";
  }

  async function openPhoto(file, name) {
    if (!file || state.busy) return;
    if (file.size > state.limits.max_upload_bytes) {
      const mb = (n) => `${Math.round(n / 2 ** 20)} MB`;
      toast(
        `${name || file.name} is ${mb(file.size)}; this server accepts up to ` +
          `${mb(state.limits.max_upload_bytes)} (edgefill serve --max-upload-mb)`,
        "error",
      );
      return;
    }
    let bmp;
    try {
      bmp = await createImageBitmap(file);
    } catch (e) {
      toast(
        `${name || file.name}: this browser cannot display that file. Use PNG, JPEG or WebP.`,
        "error",
      );
      return;
    }
    if (bmp.width * bmp.height > state.limits.max_pixels) {
      toast(
        `${bmp.width}×${bmp.height} is more than this server's limit of ` +
          `${Math.round(state.limits.max_pixels / 1e6)} megapixels`,
        "error",
      );
      bmp.close();
      return;
    }
    if (state.photo) state.photo.close();
    if (state.result) state.result.bitmap.close();
    state.photo = bmp;
    state.photoFile = file;
    state.photoName = name || file.name || "photo.png";
    state.W = bmp.width;
    state.H = bmp.height;
    state.mask = new Layer(state.W, state.H);
    state.edges = new Layer(state.W, state.H);
    state.maskVersion++;
    state.edgesVersion = -1;
    state.maskHasPixels = false;
    state.result = null;
    setStatus();
    resizeView();
    fit();
    setView("mask");
  }

  async function loadMaskFile(file) {
    if (!file || !state.photo) return;
    try {
      const c = await grayToAlpha(file, state.W, state.H, true).catch((e) => {
        if (e instanceof UserError) throw new UserError(`${file.name}: ${e.message}`);
        throw new UserError(`${file.name}: not an image this browser can read`);
      });
      state.mask.push({ type: "image", canvas: c });
      maskChanged();
      if (state.view !== "mask") setView("mask");
      toast(state.maskHasPixels ? "Mask loaded" : "That mask is empty (all black)");
    } catch (e) {
      reportError(e);
    }
  }

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function keepResult() {
    if (!state.result || state.busy) return;
    const { blob, bitmap } = state.result;
    state.photo.close();
    state.photo = bitmap;
    state.photoFile = blob;
    state.photoName = `${baseName()}_inpainted.png`;
    state.result = null;
    state.mask = new Layer(state.W, state.H);
    state.edges = new Layer(state.W, state.H);
    state.maskVersion++;
    state.maskHasPixels = false;
    setStatus();
    setView("mask");
    toast("Continuing on the result; paint what is left to fix");
  }

  // ------------------------------------------------------------------------ drawing

  function maskChanged() {
    state.maskVersion++;
    state.maskHasPixels = state.mask.hasPixels();
    refreshUI();
    requestRender();
  }

  function historyStep(redo) {
    const layer = currentLayer();
    if (!layer || state.busy) return;
    const done = redo ? layer.redo() : layer.undo();
    if (!done) return;
    if (layer === state.mask) maskChanged();
    refreshUI();
    requestRender();
  }

  function clearLayer() {
    const layer = currentLayer();
    if (!layer || !layer.ops.length || state.busy) return;
    layer.push({ type: "reset" });
    if (layer === state.mask) maskChanged();
    refreshUI();
    requestRender();
  }

  function setTool(tool) {
    state.tool = tool;
    refreshUI();
    updateCursor();
  }

  function setSize(v) {
    const key = state.view === "edges" ? "edges" : "mask";
    const size = Math.round(Math.min(MAX_SIZE, Math.max(MIN_SIZE, v)));
    state.sizes[key] = size;
    $("brush-size").value = size;
    $("brush-size-out").value = size;
    updateCursor();
  }

  let stroke = null; // {layer, op, pointerId}
  let pan = null; // {pointerId, x, y, vx, vy}
  let pinch = null; // {dist, cx, cy}
  let comparing = null;
  const pointers = new Map();
  let lastPointer = null;

  function canPaint() {
    if (!state.photo || state.busy) return null;
    if (state.view === "mask") return state.mask;
    if (state.view === "edges" && state.edges.base) return state.edges;
    return null;
  }

  function startStroke(e) {
    const layer = canPaint();
    if (!layer) return;
    const size = state.sizes[state.view === "edges" ? "edges" : "mask"];
    const op = {
      type: "stroke",
      erase: state.tool === "eraser",
      width: Math.max(1, size / state.vt.s),
      points: [toImage(e.clientX, e.clientY)],
    };
    stroke = { layer, op, pointerId: e.pointerId };
    drawStroke(layer.ctx, op);
    requestRender();
  }

  function extendStroke(e) {
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    const list = events.length ? events : [e];
    const op = stroke.op;
    for (const ev of list) {
      const p = toImage(ev.clientX, ev.clientY);
      const last = op.points[op.points.length - 1];
      if (Math.hypot(p[0] - last[0], p[1] - last[1]) < 0.5) continue;
      drawStroke(stroke.layer.ctx, { ...op, points: [last, p] });
      op.points.push(p);
    }
    requestRender();
  }

  function endStroke(cancel) {
    if (!stroke) return;
    const { layer, op } = stroke;
    stroke = null;
    if (cancel) {
      layer.render();
    } else {
      layer.push(op, true);
      if (layer === state.mask) maskChanged();
    }
    refreshUI();
    requestRender();
  }

  function setCompare(clientX) {
    const r = view.getBoundingClientRect();
    const [x, , w] = imageRect();
    state.compare = Math.min(1, Math.max(0, (clientX - r.left - x) / w));
    requestRender();
  }

  function updateCursor(e) {
    const cur = $("brush-cursor");
    if (e) lastPointer = { x: e.clientX, y: e.clientY, type: e.pointerType };
    const painting = !!canPaint() && !pan && !pinch && !state.spaceDown;
    view.classList.toggle("panning", !!pan || state.spaceDown);
    view.classList.toggle("comparing", state.view === "result");
    if (!painting || !lastPointer || lastPointer.type === "touch") {
      cur.hidden = true;
      return;
    }
    const size = state.sizes[state.view === "edges" ? "edges" : "mask"];
    const r = stage.getBoundingClientRect();
    cur.hidden = false;
    cur.className = state.tool === "eraser" ? "eraser" : "";
    cur.style.width = cur.style.height = `${size}px`;
    cur.style.left = `${lastPointer.x - r.left}px`;
    cur.style.top = `${lastPointer.y - r.top}px`;
  }

  view.addEventListener("pointerdown", (e) => {
    if (!state.photo || state.busy) return;
    view.setPointerCapture(e.pointerId);
    const r = view.getBoundingClientRect();
    pointers.set(e.pointerId, { x: e.clientX - r.left, y: e.clientY - r.top });
    if (pointers.size === 2) {
      // Second finger: the touch is a pinch, not a stroke.
      endStroke(true);
      comparing = null;
      const [a, b] = [...pointers.values()];
      pinch = { dist: Math.hypot(a.x - b.x, a.y - b.y), cx: (a.x + b.x) / 2, cy: (a.y + b.y) / 2 };
      return;
    }
    if (pointers.size > 2) return;
    if (e.button === 1 || e.button === 2 || state.spaceDown) {
      pan = { pointerId: e.pointerId, x: e.clientX, y: e.clientY, vx: state.vt.x, vy: state.vt.y };
      updateCursor(e);
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    if (state.view === "result") {
      comparing = e.pointerId;
      setCompare(e.clientX);
      return;
    }
    startStroke(e);
  });

  view.addEventListener("pointermove", (e) => {
    const r = view.getBoundingClientRect();
    if (pointers.has(e.pointerId)) {
      pointers.set(e.pointerId, { x: e.clientX - r.left, y: e.clientY - r.top });
    }
    if (pinch && pointers.size >= 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a.x - b.x, a.y - b.y);
      const cx = (a.x + b.x) / 2;
      const cy = (a.y + b.y) / 2;
      state.vt.x += cx - pinch.cx;
      state.vt.y += cy - pinch.cy;
      if (pinch.dist > 0) zoomAt(cx, cy, dist / pinch.dist);
      pinch = { dist, cx, cy };
      state.fitted = false;
      requestRender();
    } else if (pan && pan.pointerId === e.pointerId) {
      state.vt.x = pan.vx + e.clientX - pan.x;
      state.vt.y = pan.vy + e.clientY - pan.y;
      state.fitted = false;
      requestRender();
    } else if (comparing === e.pointerId) {
      setCompare(e.clientX);
    } else if (stroke && stroke.pointerId === e.pointerId) {
      extendStroke(e);
    }
    updateCursor(e);
  });

  function pointerEnd(e) {
    pointers.delete(e.pointerId);
    if (pinch && pointers.size < 2) pinch = null;
    if (pan && pan.pointerId === e.pointerId) pan = null;
    if (comparing === e.pointerId) comparing = null;
    if (stroke && stroke.pointerId === e.pointerId) endStroke(e.type === "pointercancel");
    updateCursor(e);
  }
  view.addEventListener("pointerup", pointerEnd);
  view.addEventListener("pointercancel", pointerEnd);
  view.addEventListener("pointerleave", () => {
    lastPointer = null;
    $("brush-cursor").hidden = true;
  });
  view.addEventListener("contextmenu", (e) => e.preventDefault());
  view.addEventListener(
    "wheel",
    (e) => {
      if (!state.photo) return;
      e.preventDefault();
      const r = view.getBoundingClientRect();
      const delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-delta * 0.0015));
    },
    { passive: false },
  );

  // Before/after handle: drag or arrow keys.
  const handle = $("compare-handle");
  handle.addEventListener("pointerdown", (e) => {
    handle.setPointerCapture(e.pointerId);
    comparing = e.pointerId;
  });
  handle.addEventListener("pointermove", (e) => {
    if (comparing === e.pointerId) setCompare(e.clientX);
  });
  handle.addEventListener("pointerup", () => (comparing = null));
  handle.addEventListener("keydown", (e) => {
    const step = e.shiftKey ? 0.1 : 0.02;
    if (e.key === "ArrowLeft") state.compare = Math.max(0, state.compare - step);
    else if (e.key === "ArrowRight") state.compare = Math.min(1, state.compare + step);
    else if (e.key === "Home") state.compare = 0;
    else if (e.key === "End") state.compare = 1;
    else return;
    e.preventDefault();
    requestRender();
  });

  // ------------------------------------------------------------------------ wiring

  const photoInput = $("photo-input");
  const maskInput = $("mask-input");
  const pickPhoto = () => !state.busy && photoInput.click();
  $("open-photo").addEventListener("click", pickPhoto);
  $("open-photo-2").addEventListener("click", pickPhoto);
  photoInput.addEventListener("change", () => {
    openPhoto(photoInput.files[0]);
    photoInput.value = "";
  });
  $("load-mask").addEventListener("click", () => maskInput.click());
  maskInput.addEventListener("change", () => {
    loadMaskFile(maskInput.files[0]);
    maskInput.value = "";
  });
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => setView(tab.dataset.view));
  }
  $("tool-brush").addEventListener("click", () => setTool("brush"));
  $("tool-eraser").addEventListener("click", () => setTool("eraser"));
  $("brush-size").addEventListener("input", (e) => setSize(Number(e.target.value)));
  $("undo").addEventListener("click", () => historyStep(false));
  $("redo").addEventListener("click", () => historyStep(true));
  $("clear").addEventListener("click", clearLayer);
  $("fit").addEventListener("click", fit);
  $("inpaint").addEventListener("click", inpaint);
  $("detect-damage").addEventListener("click", detectDamage);
  $("cancel").addEventListener("click", () => state.abort && state.abort.abort());
  $("keep-result").addEventListener("click", keepResult);
  $("show-edges-again").addEventListener("click", () => setView("edges"));
  $("download-result").addEventListener("click", () => {
    if (state.result) download(state.result.blob, `${baseName()}_inpainted.png`);
  });
  $("download-mask").addEventListener("click", async () => {
    if (state.photo) download(await state.mask.toBlob(true), `${baseName()}_mask.png`);
  });
  const help = $("help");
  $("help-button").addEventListener("click", () => help.showModal());
  $("help-close").addEventListener("click", () => help.close());

  // Drag and drop a photo anywhere on the page.
  let dragDepth = 0;
  window.addEventListener("dragenter", (e) => {
    if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
    dragDepth++;
    $("drop-hint").hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop-hint").hidden = true;
  });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    $("drop-hint").hidden = true;
    const file = e.dataTransfer?.files?.[0];
    if (file) openPhoto(file);
  });

  // Paste a photo (e.g. a screenshot) with Ctrl+V.
  window.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      e.preventDefault();
      openPhoto(file, file.name && file.name !== "image.png" ? file.name : "pasted.png");
    }
  });

  window.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof HTMLInputElement && t.type !== "range";
    if (typing || help.open) return;
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (mod && key === "z") {
      historyStep(e.shiftKey);
    } else if (mod && key === "y") {
      historyStep(true);
    } else if (mod && e.key === "Enter") {
      inpaint();
    } else if (mod || e.altKey) {
      return;
    } else if (key === "b") {
      setTool("brush");
    } else if (key === "e") {
      setTool("eraser");
    } else if (e.key === "[") {
      setSize(state.sizes[state.view === "edges" ? "edges" : "mask"] / 1.25);
    } else if (e.key === "]") {
      setSize(state.sizes[state.view === "edges" ? "edges" : "mask"] * 1.25);
    } else if (key === "1" || key === "2" || key === "3") {
      if (!state.busy) setView(["mask", "edges", "result"][Number(key) - 1]);
    } else if (key === "f") {
      fit();
    } else if (key === "d") {
      if (!$("detect-damage").hidden) detectDamage();
    } else if (key === "o") {
      pickPhoto();
    } else if (e.key === "?") {
      help.showModal();
    } else if (e.key === " ") {
      if (t instanceof HTMLButtonElement) return;
      state.spaceDown = true;
      updateCursor();
    } else if (e.key === "Escape" && state.abort) {
      state.abort.abort();
    } else {
      return;
    }
    e.preventDefault();
  });
  window.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      state.spaceDown = false;
      updateCursor();
    }
  });

  new ResizeObserver(resizeView).observe(view);

  // For tests and the curious: read-only helpers (no state is changed through them).
  window.edgefill = {
    imageToClient: (x, y) => toClient(x, y),
    clientToImage: (x, y) => toImage(x, y),
    get view() {
      return state.view;
    },
    get busy() {
      return state.busy;
    },
    get size() {
      return [state.W, state.H];
    },
    get edgesReady() {
      return (
        state.view === "edges" && !!state.edges?.base && state.edgesVersion === state.maskVersion
      );
    },
  };

  document.body.dataset.view = state.view;
  resizeView();
  refreshUI();
  loadHealth();
})();
