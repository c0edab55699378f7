// edgefill web app: paint or select a mask, check and edit the predicted edges, inpaint, compare.
//
// Hand-written, no build step, no outside requests. Each open photo is a "doc" with its own
// mask, edges, results and one undo/redo history that holds strokes, runs and Keep & continue.
// Photos are kept at full resolution: the mask and edge layers are canvases of the photo's size,
// the view canvas only shows them scaled. Layers are white strokes on transparent; they are
// exported as white-on-black PNGs.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const view = $("view");
  const vctx = view.getContext("2d");
  const stage = $("stage");
  const scratch = document.createElement("canvas"); // view-sized, for tinting layers
  const sctx = scratch.getContext("2d");
  const scratch2 = document.createElement("canvas"); // view-sized, a layer scaled once
  const sctx2 = scratch2.getContext("2d");

  const COLORS = {
    mask: "#ff3d7f",
    hole: "#ff3d7f",
    edgeInside: "#4ff0ff",
    edgeOutside: "#ffffff",
    object: "#4dff88",
    notObject: "#ff5c5c",
    doubt: "#ffc400", // detected damage the detector is unsure of: shown, not marked
  };
  const MIN_SIZE = 2;
  const MAX_SIZE = 200;
  const MAX_DOCS = 12;
  const MAX_RESULTS = 12; // per photo, in the strip
  // A loaded mask file that makes more of the photo the hole was most likely made with white on
  // what to keep (masks.INVERTED_MASK_SHARE, the command line's warning).
  const INVERTED_MASK_SHARE = 0.75;
  const SETTINGS_KEY = "edgefill.settings.v1";
  const DEFAULT_SETTINGS = {
    hdStrategy: "crop",
    refine: false,
    detectKind: "auto",
    sensitivity: 0.5,
    autoRun: false,
  };
  const CHOICES = {
    hdStrategy: ["crop", "resize", "original"],
    detectKind: ["auto", "scratches", "spots"],
  };

  const ui = {
    docs: [],
    tool: "brush", // brush | eraser | select
    selectMode: "box", // box | object | background
    sizes: { mask: 40, edges: 4, select: 14 }, // brush sizes in screen pixels
    busy: false,
    abort: null,
    limits: { max_upload_bytes: 64 * 2 ** 20, max_pixels: 40e6 },
    spaceDown: false,
    settings: loadSettings(),
    requests: 0, // requests sent, for tests
    serverFinishing: false, // a request was cancelled and no answer came since (busyLabel)
  };
  let D = null; // the active doc
  let uid = 1; // ids for docs, layers, operations and results

  // ------------------------------------------------------------------------ settings

  function loadSettings() {
    let saved = {};
    try {
      saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") || {};
    } catch (e) {
      saved = {};
    }
    const s = { ...DEFAULT_SETTINGS };
    for (const key of Object.keys(s)) {
      if (!(key in saved)) continue;
      const v = saved[key];
      if (key in CHOICES) s[key] = CHOICES[key].includes(v) ? v : s[key];
      else if (typeof s[key] === "boolean") s[key] = v === true;
      else if (typeof v === "number" && v >= 0 && v <= 1) s[key] = v;
    }
    return s;
  }

  function saveSettings() {
    try {
      localStorage.setItem(SETTINGS_KEY, JSON.stringify(ui.settings));
    } catch (e) {
      /* private mode: the settings last for this page only */
    }
  }

  function showSettings() {
    const s = ui.settings;
    $("set-hd").value = s.hdStrategy;
    $("set-refine").checked = s.refine;
    $("set-kind").value = s.detectKind;
    $("set-sensitivity").value = String(s.sensitivity);
    $("set-sensitivity-out").value = s.sensitivity.toFixed(2);
    $(s.autoRun ? "set-run-auto" : "set-run-manual").checked = true;
  }

  function readSettings() {
    ui.settings = {
      hdStrategy: $("set-hd").value,
      refine: $("set-refine").checked,
      detectKind: $("set-kind").value,
      sensitivity: Number($("set-sensitivity").value),
      autoRun: $("set-run-auto").checked,
    };
    $("set-sensitivity-out").value = ui.settings.sensitivity.toFixed(2);
    saveSettings();
    refreshUI();
  }

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

  // A full-resolution layer rebuilt from a list of operations: undo pops one and redraws.
  class Layer {
    constructor(w, h) {
      this.id = uid++;
      this.canvas = makeCanvas(w, h);
      this.ctx = this.canvas.getContext("2d");
      this.base = null; // canvas drawn before the operations ("reset" returns to it)
      this.ops = [];
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
    // Ops are only appended and popped, and every op has its own id, so the count and the last
    // id name the layer's content: results remember it to know when they went stale.
    get signature() {
      const last = this.ops[this.ops.length - 1];
      return `${this.id}:${this.ops.length}:${last ? last.id : 0}`;
    }
    // The content differs from the base: an operation follows the last reset.
    get changed() {
      return this.ops.map((op) => op.type).lastIndexOf("reset") < this.ops.length - 1;
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
      return canvasBlob(c);
    }
  }

  const canvasBlob = (c) => new Promise((resolve) => c.toBlob(resolve, "image/png"));

  // The painted part of a canvas, scanned at most 512 px wide (halving keeps thin strokes):
  // null when nothing is painted, else the bounding box [x0, y0, x1, y1] in canvas pixels.
  function paintedBox(canvas) {
    let src = canvas;
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
    let x0 = w;
    let y0 = h;
    let x1 = -1;
    let y1 = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (d[(y * w + x) * 4 + 3] > 0) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return null;
    const sx = canvas.width / w;
    const sy = canvas.height / h;
    return [x0 * sx, y0 * sy, (x1 + 1) * sx, (y1 + 1) * sy];
  }

  // A gray PNG (white = 255) as a white layer whose alpha is the gray value.
  // The detector's confidence PNG (grey = region confidence) as two alpha canvases: regions at
  // or above `at` (0-1) and the uncertain rest.
  async function splitConfidence(blob, w, h, at) {
    const grey = await grayToAlpha(blob, w, h);
    const sure = makeCanvas(w, h);
    const doubt = makeCanvas(w, h);
    const src = grey.getContext("2d").getImageData(0, 0, w, h);
    const a = new ImageData(w, h);
    const b = new ImageData(w, h);
    const cut = Math.max(1, Math.round(at * 255));
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3];
      const out = v >= cut ? a.data : v > 0 ? b.data : null;
      if (!out) continue;
      out[i] = out[i + 1] = out[i + 2] = out[i + 3] = 255;
    }
    sure.getContext("2d").putImageData(a, 0, 0);
    doubt.getContext("2d").putImageData(b, 0, 0);
    return [sure, doubt];
  }

  // The EXIF orientation of a JPEG (1 for anything else): the browser shows the photo turned
  // by it, and a mask made on its stored pixels (a script that ignores EXIF) must be turned
  // the same way, as the library does (masks.made_on_stored_pixels).
  async function jpegOrientation(file) {
    const b = new DataView(await file.slice(0, 65536).arrayBuffer());
    if (b.byteLength < 4 || b.getUint16(0) !== 0xffd8) return 1;
    for (let at = 2; at + 4 <= b.byteLength; ) {
      const marker = b.getUint16(at);
      const size = b.getUint16(at + 2);
      if (marker === 0xffe1 && at + 10 <= b.byteLength && b.getUint32(at + 4) === 0x45786966) {
        const tiff = at + 10; // after "Exif\0\0"
        if (tiff + 8 > b.byteLength) return 1;
        const little = b.getUint16(tiff) === 0x4949;
        const ifd = tiff + b.getUint32(tiff + 4, little);
        if (ifd + 2 > b.byteLength) return 1;
        const count = b.getUint16(ifd, little);
        for (let i = 0; i < count && ifd + 14 + i * 12 <= b.byteLength; i++) {
          const entry = ifd + 2 + i * 12;
          if (b.getUint16(entry, little) === 0x0112) return b.getUint16(entry + 8, little);
        }
        return 1;
      }
      if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return 1; // image data: no EXIF
      at += 2 + size;
    }
    return 1;
  }

  // Canvas transforms that turn stored pixels (sw wide, sh high) upright, per orientation 5-8.
  const TURN = {
    5: (sw, sh) => [0, 1, 1, 0, 0, 0],
    6: (sw, sh) => [0, 1, -1, 0, sh, 0],
    7: (sw, sh) => [0, -1, -1, 0, sh, sw],
    8: (sw, sh) => [0, -1, 1, 0, 0, sw],
  };

  // A grey image (white = 255) as a white layer whose alpha is the grey value. With a
  // `threshold` (1-255) the layer is binary, read as the library reads a mask file
  // (masks.load_mask): opaque pixels (alpha >= 128) at or above it, and a colour image is refused.
  // One made on the stored pixels of a photo its `orientation` turns is turned the same way.
  async function grayToAlpha(blob, w, h, threshold = 0, orientation = 1) {
    const bmp = await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    const stored = TURN[orientation] && w !== h && bmp.width === h && bmp.height === w;
    if (!stored && (bmp.width !== w || bmp.height !== h)) {
      const size = `${bmp.width}×${bmp.height}`;
      bmp.close();
      throw new UserError(`it is ${size} but the photo is ${w}×${h}; they must be the same size`);
    }
    const c = makeCanvas(w, h);
    const ctx = c.getContext("2d", { willReadFrequently: true });
    if (stored) ctx.setTransform(...TURN[orientation](bmp.width, bmp.height));
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bmp, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    bmp.close();
    const img = ctx.getImageData(0, 0, w, h);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      let v = Math.max(d[i], d[i + 1], d[i + 2]);
      if (!threshold) {
        v = Math.round((v * d[i + 3]) / 255);
      } else if (d[i + 3] < 128) {
        v = 0; // a transparent pixel is never the hole, whatever its colour
      } else if (d[i] !== d[i + 1] || d[i] !== d[i + 2]) {
        throw new UserError(
          "it has colour; a mask is white strokes on black (strokes painted on a copy of the " +
            "photo are not a mask)",
        );
      } else {
        v = v >= threshold ? 255 : 0;
      }
      d[i] = d[i + 1] = d[i + 2] = 255;
      d[i + 3] = v;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  function thumbnail(src, w, h, size) {
    const s = Math.min(1, size / Math.max(w, h));
    const c = makeCanvas(Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s)));
    const ctx = c.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.fillStyle = checkerboard(ctx); // JPEG has no alpha: transparency would turn black
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.drawImage(src, 0, 0, c.width, c.height);
    return c.toDataURL("image/jpeg", 0.8);
  }

  // ------------------------------------------------------------------------ docs

  function newDoc(file, name, bmp, orientation) {
    return {
      id: uid++,
      file, // Blob sent to the server (the original file: full resolution, EXIF intact)
      orientation, // the file's EXIF orientation: a mask file may fit its stored pixels
      fileId: uid++, // names the photo's current version (Keep & continue makes a new one)
      name,
      photo: bmp, // ImageBitmap for display
      W: bmp.width,
      H: bmp.height,
      thumb: thumbnail(bmp, bmp.width, bmp.height, 96),
      view: "mask",
      mask: new Layer(bmp.width, bmp.height),
      edges: new Layer(bmp.width, bmp.height),
      edgesKey: null, // what the edge prediction (edges.base) was made for
      maskHasPixels: false,
      result: null, // the result shown: {id, blob, bitmap, before, usedEdges, seconds, ...}
      results: [], // the strip: earlier results of this photo, newest last
      compare: 0.5,
      vt: { s: 1, x: 0, y: 0 }, // view transform: client = x + image * s (CSS pixels)
      fitted: true,
      undo: [],
      redo: [],
      saved: undefined, // the undo entry on top when the work was last downloaded
      selection: null, // an object selection in progress (see "object selection")
    };
  }

  const isDirty = (doc) => doc.undo[doc.undo.length - 1] !== doc.saved;
  const markSaved = (doc) => (doc.saved = doc.undo[doc.undo.length - 1]);

  function activate(doc) {
    if (ui.busy || doc === D) return;
    endSelection();
    clearPhotoToast();
    D = doc;
    resizeView();
    if (D.fitted) fit();
    setView(D.view);
    setStatus();
    renderDocs();
  }

  async function closeDoc(doc) {
    if (ui.busy) return;
    if (isDirty(doc)) {
      const ok = await confirmDialog(
        `Close ${doc.name}?`,
        "Its mask, edges and results have changed since you last downloaded them; " +
          "closing it throws that work away.",
        "Close without saving",
      );
      if (!ok) return;
    }
    const i = ui.docs.indexOf(doc);
    ui.docs.splice(i, 1);
    if (doc === D) {
      D = null;
      const next = ui.docs[Math.min(i, ui.docs.length - 1)];
      if (next) activate(next);
    }
    // The last photo closed: the start page, not the closed photo's view and news.
    if (!D) {
      showView("mask");
      $("toast").hidden = true;
    }
    renderDocs();
    setStatus();
    refreshUI();
    requestRender();
  }

  function renderDocs() {
    const bar = $("docs");
    bar.hidden = !ui.docs.length;
    document.body.classList.toggle("has-docs", ui.docs.length > 0);
    const list = $("doc-list");
    list.replaceChildren();
    for (const doc of ui.docs) {
      const item = document.createElement("div");
      item.className = "doc" + (doc === D ? " active" : "");
      const pick = document.createElement("button");
      pick.className = "doc-pick";
      pick.disabled = ui.busy;
      pick.title = `${doc.name} · ${doc.W}×${doc.H}`;
      if (doc === D) pick.setAttribute("aria-current", "true");
      const img = document.createElement("img");
      img.src = doc.result ? doc.result.thumb : doc.thumb;
      img.alt = "";
      const name = document.createElement("span");
      name.className = "doc-name";
      name.textContent = doc.name;
      const dot = document.createElement("span");
      dot.className = "doc-state";
      const stale = doc.result && resultStale(doc);
      dot.dataset.state = isDirty(doc) ? "unsaved" : doc.result ? "saved" : "new";
      dot.title = isDirty(doc)
        ? "Changed since the last download"
        : doc.result
          ? "Downloaded"
          : "No changes yet";
      if (stale) dot.title += " · the result is outdated";
      pick.append(img, name, dot);
      pick.addEventListener("click", () => activate(doc));
      const close = document.createElement("button");
      close.className = "doc-close";
      close.disabled = ui.busy;
      close.setAttribute("aria-label", `Close ${doc.name}`);
      close.title = `Close ${doc.name}`;
      close.textContent = "×";
      close.addEventListener("click", () => closeDoc(doc));
      item.append(pick, close);
      list.append(item);
    }
    $("download-all").hidden = ui.docs.length < 2;
    $("download-all").disabled = ui.busy || !ui.docs.some((d) => d.result);
  }

  // ------------------------------------------------------------------------ history
  //
  // One list per photo: {type: "op", layer, op} paints, {type: "run", result, prev} shows a new
  // result, {type: "keep", before, after} swaps the photo (Keep & continue), {type: "group",
  // items} does several as one step (auto-run: run + keep).

  function snapshot(doc) {
    return {
      photo: doc.photo,
      file: doc.file,
      orientation: doc.orientation,
      fileId: doc.fileId,
      thumb: doc.thumb,
      name: doc.name,
      mask: doc.mask,
      edges: doc.edges,
      edgesKey: doc.edgesKey,
      result: doc.result,
    };
  }

  function restore(doc, snap) {
    Object.assign(doc, snap);
    doc.maskHasPixels = !!paintedBox(doc.mask.canvas);
  }

  function applyEntry(doc, entry, forward) {
    if (entry.type === "group") {
      const items = forward ? entry.items : [...entry.items].reverse();
      for (const item of items) applyEntry(doc, item, forward);
    } else if (entry.type === "op") {
      if (forward) {
        entry.layer.ops.push(entry.op);
        entry.layer.apply(entry.op);
      } else {
        entry.layer.ops.pop();
        entry.layer.render();
      }
      if (entry.layer === doc.mask) doc.maskHasPixels = !!paintedBox(doc.mask.canvas);
      // a detection's yellow "uncertain" overlay comes and goes with its step
      if ("doubt" in entry) doc.doubt = forward ? entry.doubt : entry.doubtBefore;
    } else if (entry.type === "run") {
      doc.result = forward ? entry.result : entry.prev;
    } else if (entry.type === "keep") {
      restore(doc, forward ? entry.after : entry.before);
    }
  }

  function record(entry) {
    D.undo.push(entry);
    D.redo = [];
    afterChange();
  }

  // A layer operation as one history step (`extra`: more state the step sets, see applyEntry).
  function layerStep(layer, op, label, applied = false, extra = {}) {
    op.id = uid++;
    layer.ops.push(op);
    if (!applied) layer.apply(op);
    if (layer === D.mask) D.maskHasPixels = !!paintedBox(D.mask.canvas);
    record({ type: "op", layer, op, label, ...extra });
  }

  function afterChange() {
    refreshUI();
    renderDocs();
    setStatus();
    requestRender();
  }

  // Where an undone or redone step can be seen.
  function viewFor(entry) {
    const last = entry.type === "group" ? entry.items[entry.items.length - 1] : entry;
    if (last.type === "op") return last.layer === D.edges && D.edges.base ? "edges" : "mask";
    if (last.type === "run") return D.result ? "result" : "mask";
    return "mask";
  }

  function historyStep(redo) {
    if (!D) return;
    if (ui.busy) return;
    const from = redo ? D.redo : D.undo;
    const to = redo ? D.undo : D.redo;
    if (!from.length) {
      toast(redo ? "Nothing to redo" : "Nothing to undo");
      return;
    }
    endSelection();
    const entry = from.pop();
    applyEntry(D, entry, redo);
    to.push(entry);
    const want = viewFor(entry);
    if (want !== D.view) setView(want);
    toast(`${redo ? "Redone" : "Undone"}: ${entry.label}`);
    afterChange();
  }

  // Hole and kept area swapped (one undoable step): a mask made with white on what to keep,
  // as some editors export them, or an object selected in order to keep it.
  function invertMask() {
    if (!D || ui.busy) return;
    endSelection();
    const c = makeCanvas(D.W, D.H);
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, D.W, D.H);
    ctx.globalCompositeOperation = "destination-out"; // alpha becomes 1 - the mask's alpha
    ctx.drawImage(D.mask.canvas, 0, 0);
    layerStep(D.mask, { type: "image", canvas: c }, "invert mask");
    if (D.view !== "mask") setView("mask");
    const pct = Math.round(holeShare(c) * 100);
    const tone = pct / 100 > INVERTED_MASK_SHARE ? "error" : undefined;
    toast(`Mask inverted: ${pct} % of the photo is now the hole (undo with Ctrl+Z)`, tone);
  }

  // The hole widened a little (one undoable step per press), as `--grow-mask` does: a loaded
  // mask or a selection that stops at an object's edge leaves its outline and soft shadow.
  // A quarter of a percent of the longer side per press (2 px at least: 10 px at 4000 px).
  const growStep = (w, h) => Math.max(2, Math.round(Math.max(w, h) * 0.0025));
  const FOUR = [[1, 0], [-1, 0], [0, 1], [0, -1]];
  const EIGHT = [...FOUR, [1, 1], [1, -1], [-1, 1], [-1, -1]];

  function growMask() {
    if (!D || ui.busy || !D.maskHasPixels) return;
    endSelection();
    const px = growStep(D.W, D.H);
    const box = paintedBox(D.mask.canvas); // only the painted part (and px around it) is grown
    const x0 = Math.max(0, Math.floor(box[0]) - px);
    const y0 = Math.max(0, Math.floor(box[1]) - px);
    const w = Math.min(D.W, Math.ceil(box[2]) + px) - x0;
    const h = Math.min(D.H, Math.ceil(box[3]) + px) - y0;
    const part = makeCanvas(w, h);
    const ctx = part.getContext("2d");
    const before = makeCanvas(w, h);
    const bctx = before.getContext("2d");
    ctx.drawImage(D.mask.canvas, -x0, -y0);
    // One pixel per round, the 4 and the 8 neighbours in turn: an octagon close to the disc
    // the library grows by (masks.grow_hole).
    for (let i = 0; i < px; i++) {
      bctx.clearRect(0, 0, w, h);
      bctx.drawImage(part, 0, 0);
      for (const [dx, dy] of i % 2 ? EIGHT : FOUR) ctx.drawImage(before, dx, dy);
    }
    const c = makeCanvas(D.W, D.H);
    const cctx = c.getContext("2d");
    cctx.drawImage(D.mask.canvas, 0, 0);
    cctx.drawImage(part, x0, y0);
    layerStep(D.mask, { type: "image", canvas: c }, "grow mask");
    if (D.view !== "mask") setView("mask");
    toast(`Mask grown by ${px} px (undo with Ctrl+Z)`);
  }

  // The share of the photo a binary mask layer makes the hole.
  function holeShare(canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n / (canvas.width * canvas.height);
  }

  function clearLayer() {
    const layer = currentLayer();
    if (!layer || !layer.ops.length || ui.busy) return;
    if (layer !== D.mask) {
      layerStep(layer, { type: "reset" }, "reset edges");
      return;
    }
    // Clearing the mask starts over: a detection's yellow "uncertain" marks go with it (undoable).
    layerStep(layer, { type: "reset" }, "clear mask", false, {
      doubt: null,
      doubtBefore: D.doubt || null,
    });
    D.doubt = null;
    requestRender();
  }

  // ------------------------------------------------------------------------ results

  function resultStale(doc) {
    const r = doc.result;
    if (!r) return false;
    return (
      r.before.fileId !== doc.fileId ||
      r.maskSig !== doc.mask.signature ||
      r.edgesSig !== doc.edges.signature
    );
  }

  function staleReason(doc) {
    const r = doc.result;
    if (r.before.fileId !== doc.fileId) return "it was made from an earlier version of the photo";
    if (r.maskSig !== doc.mask.signature) return "the mask changed after it";
    return "the edges changed after it";
  }

  function renderResults() {
    const strip = $("results-strip");
    const list = D ? D.results : [];
    const show = !!D && D.view !== "edges" && list.length > 0;
    strip.hidden = !show;
    if (!show) return;
    strip.replaceChildren();
    list.forEach((r, i) => {
      const b = document.createElement("button");
      b.className = "result-thumb" + (r === D.result ? " active" : "");
      b.disabled = ui.busy;
      const stale = r.before.fileId !== D.fileId;
      b.title = `Result ${i + 1}${r.usedEdges ? " (your edges)" : ""}${
        stale ? " · made from an earlier photo" : ""
      }`;
      b.setAttribute("aria-label", b.title);
      if (r === D.result) b.setAttribute("aria-current", "true");
      const img = document.createElement("img");
      img.src = r.thumb;
      img.alt = "";
      const n = document.createElement("span");
      n.textContent = String(i + 1);
      b.append(img, n);
      b.addEventListener("click", () => pickResult(r));
      strip.append(b);
    });
  }

  // Showing an earlier result is a history step too: undo returns to the one shown before.
  function pickResult(r) {
    if (ui.busy || r === D.result) return;
    const prev = D.result;
    D.result = r;
    record({ type: "run", result: r, prev, label: `back to result ${D.results.indexOf(r) + 1}` });
    setView("result");
  }

  function keepResult() {
    if (!D || !D.result || ui.busy) return;
    record(keepEntry(D.result));
    setView("mask");
    toast("Continuing on the result (Ctrl+Z takes it back); paint what is left to fix");
  }

  function keepEntry(result) {
    const before = snapshot(D);
    // The kept result is the photo now: it is no longer a result of the photo (the strip keeps it).
    restore(D, {
      photo: result.bitmap,
      file: result.blob,
      orientation: 1, // results come back upright, without an orientation tag
      fileId: result.id,
      thumb: result.thumb,
      name: D.name,
      mask: new Layer(D.W, D.H),
      edges: new Layer(D.W, D.H),
      edgesKey: null,
      result: null,
    });
    return { type: "keep", before, after: snapshot(D), label: "keep & continue" };
  }

  // ------------------------------------------------------------------------ view transform

  function viewSize() {
    return { w: view.clientWidth, h: view.clientHeight };
  }

  function fit() {
    if (!D) return;
    const { w, h } = viewSize();
    const pad = w < 600 ? 8 : 24;
    const s = Math.min((w - 2 * pad) / D.W, (h - 2 * pad) / D.H, 16);
    D.vt = { s, x: (w - D.W * s) / 2, y: (h - D.H * s) / 2 };
    D.fitted = true;
    requestRender();
  }

  // Zoom so the hole (with some context around it) fills the view.
  function zoomToHole() {
    if (!D) return;
    const box = paintedBox(D.mask.canvas);
    if (!box) {
      toast("The mask is empty: there is no hole to zoom to yet");
      return;
    }
    const { w, h } = viewSize();
    const bw = box[2] - box[0];
    const bh = box[3] - box[1];
    const margin = Math.max(bw, bh) * 0.35 + 16;
    const s = Math.min(w / (bw + 2 * margin), h / (bh + 2 * margin), 16);
    const cx = (box[0] + box[2]) / 2;
    const cy = (box[1] + box[3]) / 2;
    D.vt = { s, x: w / 2 - cx * s, y: h / 2 - cy * s };
    D.fitted = false;
    requestRender();
    updateCursor();
  }

  function zoomAt(cx, cy, factor) {
    const vt = D.vt;
    const { w, h } = viewSize();
    const fitS = Math.min(w / D.W, h / D.H);
    const s = Math.min(Math.max(vt.s * factor, fitS * 0.5), Math.max(32, fitS));
    D.vt = { s, x: cx - ((cx - vt.x) * s) / vt.s, y: cy - ((cy - vt.y) * s) / vt.s };
    D.fitted = false;
    requestRender();
    updateCursor();
  }

  function toImage(clientX, clientY) {
    const r = view.getBoundingClientRect();
    const vt = D.vt;
    return [(clientX - r.left - vt.x) / vt.s, (clientY - r.top - vt.y) / vt.s];
  }

  function toClient(ix, iy) {
    const r = view.getBoundingClientRect();
    const vt = D.vt;
    return [r.left + vt.x + ix * vt.s, r.top + vt.y + iy * vt.s];
  }

  function resizeView() {
    const dpr = window.devicePixelRatio || 1;
    const { w, h } = viewSize();
    const pw = Math.max(1, Math.round(w * dpr));
    const ph = Math.max(1, Math.round(h * dpr));
    if (view.width !== pw || view.height !== ph) {
      view.width = scratch.width = scratch2.width = pw;
      view.height = scratch.height = scratch2.height = ph;
    }
    if (D && D.fitted) fit();
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
    const vt = D.vt;
    return [vt.x, vt.y, D.W * vt.s, D.H * vt.s];
  }

  // Draws `src` (a full-size layer) as a solid colour at `alpha`; `clip` keeps (in) or removes
  // (out) the part under another layer. `lines` draws thin lines 2-3 screen pixels wide and
  // fully opaque at any zoom: the layer is scaled once, then stamped at 1 px offsets and summed,
  // so a 1-px edge that downscaling made faint comes back solid.
  function drawTinted(src, color, alpha, clip, clipMode, lines) {
    const dpr = window.devicePixelRatio || 1;
    const rect = imageRect();
    const thicken = lines && D.vt.s < 3;
    sctx.setTransform(1, 0, 0, 1, 0, 0);
    sctx.globalCompositeOperation = "source-over";
    sctx.clearRect(0, 0, scratch.width, scratch.height);
    if (thicken) {
      sctx2.setTransform(1, 0, 0, 1, 0, 0);
      sctx2.clearRect(0, 0, scratch2.width, scratch2.height);
      sctx2.setTransform(dpr, 0, 0, dpr, 0, 0);
      sctx2.imageSmoothingEnabled = true;
      sctx2.imageSmoothingQuality = "high";
      sctx2.drawImage(src, ...rect);
      sctx.globalCompositeOperation = "lighter";
      const reps = Math.min(4, Math.max(1, Math.ceil(0.5 / D.vt.s)));
      const step = Math.max(1, Math.round(dpr));
      // Zoomed out: 3x3 stamps (about 3 px wide); from 1:1 on the line is wide already: 2x2.
      const offsets = D.vt.s < 1 ? [-step, 0, step] : [0, step];
      for (let r = 0; r < reps; r++) {
        for (const dy of offsets) for (const dx of offsets) sctx.drawImage(scratch2, dx, dy);
      }
      sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    } else {
      sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      sctx.imageSmoothingEnabled = D.vt.s < 2;
      sctx.drawImage(src, ...rect);
    }
    sctx.globalCompositeOperation = "source-in";
    sctx.fillStyle = color;
    sctx.fillRect(...rect);
    if (clip) {
      sctx.globalCompositeOperation = clipMode === "out" ? "destination-out" : "destination-in";
      sctx.imageSmoothingEnabled = false;
      sctx.drawImage(clip, ...rect);
    }
    vctx.save();
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    vctx.globalAlpha = alpha;
    vctx.drawImage(scratch, 0, 0);
    vctx.restore();
  }

  // A photo's transparent pixels shown as editors show them, over a checkerboard: black there
  // read as black paint to cover, though the result keeps them transparent.
  let checkerTile = null;
  function checkerboard(ctx) {
    if (!checkerTile) {
      checkerTile = makeCanvas(16, 16);
      const tctx = checkerTile.getContext("2d");
      tctx.fillStyle = "#9a9a9a";
      tctx.fillRect(0, 0, 16, 16);
      tctx.fillStyle = "#6e6e6e";
      tctx.fillRect(0, 0, 8, 8);
      tctx.fillRect(8, 8, 8, 8);
    }
    return ctx.createPattern(checkerTile, "repeat");
  }

  function render() {
    renderPending = false;
    const dpr = window.devicePixelRatio || 1;
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    vctx.clearRect(0, 0, view.width, view.height);
    placeCompareHandle();
    renderResults();
    if (!D) return;
    vctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    vctx.imageSmoothingEnabled = D.vt.s < 2;
    vctx.imageSmoothingQuality = "high";
    const rect = imageRect();
    vctx.save();
    vctx.shadowColor = "rgba(0,0,0,0.5)";
    vctx.shadowBlur = 18;
    vctx.fillStyle = checkerboard(vctx);
    vctx.fillRect(...rect);
    vctx.restore();

    if (D.view === "result" && D.result) {
      const split = rect[0] + rect[2] * D.compare;
      vctx.save();
      vctx.beginPath();
      vctx.rect(rect[0], rect[1], split - rect[0], rect[3]);
      vctx.clip();
      vctx.drawImage(D.result.before.photo, ...rect);
      vctx.restore();
      vctx.save();
      vctx.beginPath();
      vctx.rect(split, rect[1], rect[0] + rect[2] - split, rect[3]);
      vctx.clip();
      vctx.drawImage(D.result.bitmap, ...rect);
      vctx.restore();
      return;
    }

    vctx.drawImage(D.photo, ...rect);
    if (D.view === "edges") {
      vctx.fillStyle = "rgba(10, 12, 16, 0.72)";
      vctx.fillRect(...rect);
      drawTinted(D.mask.canvas, COLORS.hole, 0.22);
      if (D.edges.base) {
        drawTinted(D.edges.base, COLORS.edgeOutside, 0.7, D.mask.canvas, "out", true);
        drawTinted(D.edges.canvas, COLORS.edgeInside, 1, D.mask.canvas, "in", true);
      }
    } else {
      if (D.doubt) drawTinted(D.doubt, COLORS.doubt, 0.6);
      drawTinted(D.mask.canvas, COLORS.mask, 0.55);
      renderSelection(rect);
    }
  }

  function placeCompareHandle() {
    const handle = $("compare-handle");
    const labels = $("compare-labels");
    const show = !!D && D.view === "result" && !!D.result;
    handle.hidden = labels.hidden = !show;
    if (!show) return;
    const [x, y, w, h] = imageRect();
    const { w: vw, h: vh } = viewSize();
    const top = Math.max(0, y);
    const bottom = Math.min(vh, y + h);
    handle.style.left = `${x + w * D.compare}px`;
    handle.style.top = `${top}px`;
    handle.style.height = `${Math.max(0, bottom - top)}px`;
    const before = Math.round(D.compare * 100);
    handle.setAttribute("aria-valuenow", String(before));
    handle.setAttribute(
      "aria-valuetext",
      before >= 100
        ? "all before (the original)"
        : before <= 0
          ? "all after (the result)"
          : `before on the left ${before} %, after on the right ${100 - before} %`,
    );
    labels.style.left = `${Math.max(0, x)}px`;
    labels.style.width = `${Math.min(vw, x + w) - Math.max(0, x)}px`;
    labels.style.top = `${top}px`;
  }

  // ------------------------------------------------------------------------ UI state

  const HINTS = {
    mask: "Paint over everything that should be filled",
    select: "Drag a box around the object, or mark it with the Object / Not object scribbles",
    edges: "Draw or erase the lines inside the hole, then inpaint with these edges",
    result: "Drag across the photo to compare before and after",
  };

  function setView(name) {
    if (!D) return;
    if (name === "edges" && !D.maskHasPixels) return;
    if (name === "result" && !D.result) return;
    if (name !== "mask") endSelection();
    D.view = name;
    showView(name);
    if (name === "edges") {
      runJob("Predicting edges…", () => ensureEdges()).catch(reportError);
    }
  }

  // The page's parts for a view (tabs, labels, hint, cursor); also with no photo open, where
  // the page goes back to the mask view's.
  function showView(name) {
    document.body.dataset.view = name;
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      const on = tab.dataset.view === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    for (const label of document.querySelectorAll("[data-" + name + "]")) {
      label.textContent = label.dataset[name];
    }
    for (const label of document.querySelectorAll(".label[data-mask]")) {
      if (!(name in label.dataset)) label.textContent = label.dataset.mask;
    }
    syncSize();
    $("clear").title = name === "edges" ? "Back to the predicted edges" : "Clear the mask";
    showHint(HINTS[name === "mask" && ui.tool === "select" ? "select" : name]);
    refreshUI();
    requestRender();
    updateCursor();
  }

  const sizeKey = () => (D && D.view === "edges" ? "edges" : ui.tool === "select" ? "select" : "mask");

  function syncSize() {
    $("brush-size").value = ui.sizes[sizeKey()];
    $("brush-size-out").value = $("brush-size").value;
  }

  function refreshUI() {
    const has = !!D;
    const busy = ui.busy;
    document.body.classList.toggle("no-photo", !has);
    document.body.classList.toggle("is-busy", busy);
    document.body.dataset.tool = ui.tool;
    $("dropzone").hidden = has;
    // Tabs stay focusable while a job runs (arrow keys keep working); activating one waits.
    $("tab-mask").disabled = !has;
    $("tab-edges").disabled = !has || !D.maskHasPixels;
    $("tab-result").disabled = !has || !D.result;
    const stale = has && resultStale(D);
    $("tab-result").classList.toggle("stale", stale);
    $("tab-result").dataset.stale = String(stale);
    $("tab-result").title = stale ? `The result is outdated: ${staleReason(D)}` : "";
    const note = $("stale-note");
    note.hidden = !(stale && D.view === "result");
    $("stale-rerun").disabled = busy || !has || !D.maskHasPixels;
    if (!note.hidden) {
      $("stale-text").textContent = `Outdated: ${staleReason(D)}. Inpaint again to update it.`;
    }
    const canUndo = has && D.undo.length > 0;
    const canRedo = has && D.redo.length > 0;
    $("undo").disabled = busy || !canUndo;
    $("redo").disabled = busy || !canRedo;
    $("undo").title = canUndo ? `Undo ${D.undo[D.undo.length - 1].label} (Ctrl+Z)` : "Undo (Ctrl+Z)";
    $("redo").title = canRedo
      ? `Redo ${D.redo[D.redo.length - 1].label} (Ctrl+Shift+Z)`
      : "Redo (Ctrl+Shift+Z)";
    const layer = currentLayer();
    $("clear").disabled = busy || !layer || !layer.ops.length;
    $("load-mask").disabled = busy || !has;
    $("invert-mask").disabled = busy || !has;
    $("grow-mask").disabled = busy || !has || !D.maskHasPixels;
    $("detect-damage").disabled = busy || !has;
    $("fit").disabled = !has;
    $("zoom-hole").disabled = !has || !D.maskHasPixels;
    $("inpaint").disabled = busy || !has || !D.maskHasPixels;
    $("inpaint").setAttribute("aria-busy", String(busy));
    $("download-result").disabled = !has || !D.result;
    $("download-result").setAttribute(
      "aria-label",
      stale ? "Download result (outdated) as PNG" : "Download result as PNG",
    );
    $("download-mask").disabled = !has || !D.maskHasPixels;
    $("keep-result").disabled = busy || !has || !D.result;
    $("show-edges-again").disabled = busy || !has || !D.maskHasPixels;
    $("open-photo").disabled = busy;
    $("add-photo").disabled = busy || ui.docs.length >= MAX_DOCS;
    $("auto-badge").hidden = !ui.settings.autoRun;
    for (const b of ["tool-brush", "tool-eraser", "tool-select"]) {
      $(b).setAttribute("aria-pressed", String(b === "tool-" + ui.tool));
    }
    for (const mode of ["box", "object", "background"]) {
      $(`select-${mode}`).setAttribute("aria-pressed", String(ui.selectMode === mode));
    }
    $("select-done").disabled = busy || !(has && D.selection);
    for (const b of document.querySelectorAll(".doc-pick, .doc-close, .result-thumb")) {
      b.disabled = busy;
    }
  }

  function currentLayer() {
    if (!D) return null;
    if (D.view === "mask") return D.mask;
    if (D.view === "edges" && D.edges.base) return D.edges;
    return null;
  }

  let hintTimer = 0;
  function showHint(text) {
    const el = $("view-hint");
    clearTimeout(hintTimer);
    if (!text || !D) {
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
    // Just above the toolbar, however many rows it wraps into (three on a phone).
    el.style.bottom = `${document.querySelector(".toolbar").offsetHeight + 12}px`;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 9000 : 3500);
  }

  // News of one photo ("Filled", "Mask loaded") is not left up over another one; an error
  // (the server gone, a file refused) stays until it times out.
  function clearPhotoToast() {
    const el = $("toast");
    if (!el.classList.contains("error")) el.hidden = true;
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
    ui.busy = !!text;
    const el = $("busy");
    el.hidden = !text;
    stage.setAttribute("aria-busy", String(!!text));
    clearInterval(busyTimer);
    if (text) {
      $("toast").hidden = true; // an old message must not look like news about this run
      $("busy-text").textContent = busyLabel(text);
      const t0 = performance.now();
      $("busy-time").textContent = "0 s";
      busyTimer = setInterval(() => {
        $("busy-time").textContent = `${Math.round((performance.now() - t0) / 1000)} s`;
      }, 500);
    }
    refreshUI();
  }

  // One job at a time: busy from the first click (synchronously, before anything is awaited)
  // until what the job produced is drawn; a second click or shortcut meanwhile does nothing.
  async function runJob(label, fn) {
    if (ui.busy) return undefined;
    const ctrl = new AbortController();
    ui.abort = ctrl;
    setBusy(label);
    try {
      const out = await fn(ctrl.signal);
      render(); // draw now, so the overlay never lifts on the old picture
      return out;
    } finally {
      ui.abort = null;
      setBusy(null);
      renderDocs();
    }
  }

  function setStatus() {
    const parts = [];
    if (D) parts.push(`${D.name} · ${D.W}×${D.H}`);
    if (D && D.result && D.result.seconds) parts.push(`last fill ${D.result.seconds} s`);
    $("status-line").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------------ server calls

  function errorText(detail, status) {
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(-1)[0] || "request"}: ${d.msg}`).join("; ");
    }
    return detail || `the server answered ${status}`;
  }

  // The server gives up a cancelled request's work at its network's next layer (not the
  // classical steps), and the next request waits for that, so the busy text says so until an
  // answer shows the server free.
  function busyLabel(text) {
    return ui.serverFinishing ? `${text} (the server first ends the job you cancelled)` : text;
  }

  async function post(path, form, signal, label) {
    if (label) $("busy-text").textContent = busyLabel(label);
    let resp;
    ui.requests++;
    try {
      resp = await fetch(path, { method: "POST", body: form, signal });
    } catch (e) {
      if (e.name === "AbortError") {
        ui.serverFinishing = true;
        throw new Cancelled("cancelled");
      }
      throw new UserError("Cannot reach the edgefill server. Is `edgefill serve` still running?");
    }
    ui.serverFinishing = false;
    if (!resp.ok) {
      let detail = null;
      try {
        detail = (await resp.json()).detail;
      } catch (e) {
        detail = null;
      }
      throw new UserError(errorText(detail, resp.status));
    }
    try {
      const blob = await resp.blob();
      return { blob, headers: resp.headers };
    } catch (e) {
      if (e.name === "AbortError") throw new Cancelled("cancelled");
      throw e;
    }
  }

  async function baseForm(doc) {
    const form = new FormData();
    form.append("photo", doc.file, doc.name);
    form.append("mask", await doc.mask.toBlob(true), "mask.png");
    return form;
  }

  // The prediction depends on the mask and the HD strategy (the same windows as the fill).
  const edgesKeyOf = (doc) => `${doc.fileId}|${doc.mask.signature}|${ui.settings.hdStrategy}`;

  async function ensureEdges(signal) {
    const doc = D;
    if (!doc || !doc.maskHasPixels) return;
    const key = edgesKeyOf(doc);
    if (doc.edgesKey === key && doc.edges.base) return;
    const form = await baseForm(doc);
    form.append("hd_strategy", ui.settings.hdStrategy);
    const { blob } = await post("/api/edges", form, signal, "Predicting edges…");
    doc.edges.base = await grayToAlpha(blob, doc.W, doc.H);
    doc.edges.render(); // keeps the user's edge strokes on top of the new prediction
    doc.edgesKey = key;
    refreshUI();
    requestRender();
  }

  function explainEmptyMask() {
    toast("Nothing to fill yet: the mask is empty. Paint over (or select) what should go first.");
  }

  // auto: the run that follows a stroke in auto-run mode, kept at once (IOPaint's default).
  function inpaint(auto = false) {
    if (!D || ui.busy) return;
    if (!D.maskHasPixels) {
      explainEmptyMask();
      return;
    }
    const doc = D;
    // Only edited edges are sent: unedited ones are the prediction the server makes itself, and
    // sending them would make it treat them as drawn (the G2 for drawn edges fills G1's edges
    // worse than the release's own G2).
    const useEdges =
      doc.edges.changed && // a line drawn or erased since the prediction or the last Reset
      (doc.view === "edges" || (doc.view === "result" && !!doc.result && doc.result.usedEdges));
    runJob("Filling the hole…", async (signal) => {
      const t0 = performance.now();
      if (useEdges) await ensureEdges(signal);
      const form = await baseForm(doc);
      if (useEdges) form.append("edges", await doc.edges.toBlob(false), "edges.png");
      form.append("hd_strategy", ui.settings.hdStrategy);
      form.append("refine", String(ui.settings.refine));
      const { blob } = await post("/api/inpaint", form, signal, "Filling the hole…");
      const bitmap = await createImageBitmap(blob);
      // What the person waited (upload, edges, model, answer), not only the model's time.
      const seconds = ((performance.now() - t0) / 1000).toFixed(1);
      const result = {
        id: uid++,
        blob,
        bitmap,
        before: { photo: doc.photo, fileId: doc.fileId },
        usedEdges: useEdges,
        seconds,
        maskSig: doc.mask.signature,
        edgesSig: doc.edges.signature,
        thumb: thumbnail(bitmap, doc.W, doc.H, 96),
      };
      doc.results.push(result);
      if (doc.results.length > MAX_RESULTS) doc.results.shift();
      const prev = doc.result;
      doc.result = result;
      const run = { type: "run", result, prev, label: useEdges ? "inpaint with edges" : "inpaint" };
      if (auto) {
        record({ type: "group", items: [run, keepEntry(result)], label: "auto fill" });
        setView("mask");
      } else {
        record(run);
        doc.compare = 0.5;
        setView("result");
      }
      setStatus();
      toast(
        auto
          ? "Filled and kept (auto-run); Ctrl+Z takes it back"
          : useEdges
            ? "Filled, following your edges"
            : "Filled",
      );
    }).catch(reportError);
  }

  // Mark scratches, folds, dust and spots found by the server's detector: the confident regions
  // are added to what is painted already, as one undoable mask step the user can then paint over
  // or erase; the uncertain ones are only shown (yellow), never marked: a person decides.
  function detectDamage() {
    if (!D || ui.busy) return;
    const doc = D;
    runJob("Looking for scratches and dust…", async (signal) => {
      const form = new FormData();
      form.append("photo", doc.file, doc.name);
      form.append("kind", ui.settings.detectKind);
      form.append("sensitivity", String(ui.settings.sensitivity));
      form.append("confidence", "true");
      const { blob, headers } = await post("/api/detect", form, signal);
      const at = Number(headers.get("X-Edgefill-Confident-At") || 0.75);
      const [found, doubt] = await splitConfidence(blob, doc.W, doc.H, at);
      const merged = makeCanvas(doc.W, doc.H);
      const ctx = merged.getContext("2d");
      ctx.drawImage(doc.mask.canvas, 0, 0);
      ctx.drawImage(found, 0, 0);
      const unsure = Number(headers.get("X-Edgefill-Uncertain-Regions") || 0);
      const shown = unsure > 0 ? doubt : null;
      layerStep(doc.mask, { type: "image", canvas: merged }, "detected damage", false, {
        doubt: shown,
        doubtBefore: doc.doubt || null,
      });
      doc.doubt = shown;
      if (doc.view !== "mask") setView("mask");
      requestRender();
      const share = Number(headers.get("X-Edgefill-Confident-Fraction") || 0);
      const pct = (share * 100).toFixed(share < 0.001 ? 2 : 1);
      const note = unsure
        ? ` ${unsure} uncertain region(s) are shown in yellow and not marked: paint over them ` +
          "if they are damage."
        : "";
      toast(
        share > 0 || unsure
          ? `Marked ${pct} % of the photo as damaged: check it, paint what was missed, erase ` +
              `what is not damage.${note}`
          : "No scratches or dust found; paint the damage by hand",
      );
    }).catch(reportError);
  }

  async function loadHealth() {
    try {
      const r = await fetch("/api/health");
      const h = await r.json();
      ui.limits = { max_upload_bytes: h.max_upload_bytes, max_pixels: h.max_pixels };
      if (h.status !== "ok") toast(`The model is not available: ${h.detail}`, "error");
      $("detect-damage").hidden = !h.detect;
    } catch (e) {
      toast("Cannot reach the edgefill server. Is `edgefill serve` still running?", "error");
    }
  }

  // ------------------------------------------------------------------------ object selection
  //
  // A box and/or scribbles ("object" / "not object") go to /api/select (GrabCut on the server);
  // the proposal is added to the mask as it was when the selection began, as one undo step.
  // Each new box or scribble replaces the proposal with a better one. Brush and eraser refine it.

  function startSelection() {
    if (!D.selection) {
      D.selection = {
        base: (() => {
          const c = makeCanvas(D.W, D.H);
          c.getContext("2d").drawImage(D.mask.canvas, 0, 0);
          return c;
        })(),
        box: null,
        object: new Layer(D.W, D.H),
        background: new Layer(D.W, D.H),
      };
    }
    return D.selection;
  }

  function endSelection() {
    if (D && D.selection) {
      D.selection = null;
      refreshUI();
      requestRender();
    }
  }

  async function scribbleBlob(sel) {
    const c = makeCanvas(D.W, D.H);
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, c.width, c.height);
    // "Not object" is gray 128, "object" white on top; the server reads exactly these values.
    const gray = makeCanvas(D.W, D.H);
    const gctx = gray.getContext("2d");
    gctx.drawImage(sel.background.canvas, 0, 0);
    gctx.globalCompositeOperation = "source-in";
    gctx.fillStyle = "rgb(128,128,128)";
    gctx.fillRect(0, 0, D.W, D.H);
    ctx.drawImage(gray, 0, 0);
    ctx.drawImage(sel.object.canvas, 0, 0);
    return canvasBlob(c);
  }

  function requestSelection() {
    const doc = D;
    const sel = doc.selection;
    if (!sel || ui.busy) return;
    if (!sel.box && !sel.object.ops.length) {
      toast("Now draw a box around the object, or mark it with the Object scribble");
      return;
    }
    runJob("Selecting the object…", async (signal) => {
      const form = new FormData();
      form.append("photo", doc.file, doc.name);
      if (sel.box) form.append("box", sel.box.map((v) => Math.round(v)).join(","));
      if (sel.object.ops.length || sel.background.ops.length) {
        form.append("scribbles", await scribbleBlob(sel), "scribbles.png");
      }
      const { blob } = await post("/api/select", form, signal);
      const found = await grayToAlpha(blob, doc.W, doc.H, 1);
      const merged = makeCanvas(doc.W, doc.H);
      const ctx = merged.getContext("2d");
      ctx.drawImage(sel.base, 0, 0);
      ctx.drawImage(found, 0, 0);
      layerStep(doc.mask, { type: "image", canvas: merged }, "object selection");
      toast("Selected: check the pink area, refine with more scribbles or with the brush");
    }).catch(reportError);
  }

  function renderSelection(rect) {
    const sel = D.selection;
    if (!sel) return;
    drawTinted(sel.object.canvas, COLORS.object, 0.9);
    drawTinted(sel.background.canvas, COLORS.notObject, 0.9);
    const box = dragBox ? dragBox.box : sel.box;
    if (!box) return;
    const s = D.vt.s;
    const x = rect[0] + Math.min(box[0], box[2]) * s;
    const y = rect[1] + Math.min(box[1], box[3]) * s;
    const w = Math.abs(box[2] - box[0]) * s;
    const h = Math.abs(box[3] - box[1]) * s;
    vctx.save();
    vctx.lineWidth = 1.5;
    vctx.strokeStyle = "#000";
    vctx.strokeRect(x, y, w, h);
    vctx.setLineDash([6, 4]);
    vctx.strokeStyle = "#fff";
    vctx.strokeRect(x, y, w, h);
    vctx.restore();
  }

  // Done: back to the brush for touching up; in auto-run mode the fill runs now.
  function finishSelection() {
    setTool("brush");
    if (ui.settings.autoRun && D && D.maskHasPixels) inpaint(true);
  }

  function setSelectMode(mode) {
    ui.selectMode = mode;
    setTool("select");
  }

  // ------------------------------------------------------------------------ files

  function baseName(doc) {
    return doc.name.replace(/\.[^.]*$/, "") || "photo";
  }

  async function openPhotos(files) {
    const list = [...(files || [])];
    for (const file of list) {
      if (ui.docs.length >= MAX_DOCS) {
        tooManyPhotos();
        return;
      }
      await openPhoto(file);
    }
  }

  // A photo this browser cannot show (a TIFF scan, HEIC) as the server reads it, upright, in
  // 8 bits, and the orientation it was turned by; the page still sends the original file, so
  // results keep its depth and metadata.
  async function previewOnServer(file, shown) {
    const form = new FormData();
    form.append("photo", file, shown);
    try {
      const got = await runJob(`Reading ${shown}…`, (signal) =>
        post("/api/preview", form, signal),
      );
      if (!got) return null;
      const orientation = Number(got.headers.get("X-Edgefill-Orientation")) || 1;
      return { bmp: await createImageBitmap(got.blob), orientation };
    } catch (e) {
      reportError(e instanceof UserError ? new UserError(`${shown}: ${e.message}`) : e);
      return null;
    }
  }

  async function openPhoto(file, name) {
    if (!file || ui.busy) return;
    const shown = name || file.name || "photo";
    if (file.size === 0) {
      toast(`${shown} is empty (0 bytes): nothing to open`, "error");
      return;
    }
    if (file.size > ui.limits.max_upload_bytes) {
      const mb = (n) => `${Math.round(n / 2 ** 20)} MB`;
      toast(
        `${shown} is ${mb(file.size)}; this server accepts up to ` +
          `${mb(ui.limits.max_upload_bytes)} (edgefill serve --max-upload-mb)`,
        "error",
      );
      return;
    }
    let bmp, orientation;
    try {
      bmp = await createImageBitmap(file);
    } catch (e) {
      const got = await previewOnServer(file, shown);
      if (!got) return;
      ({ bmp, orientation } = got);
    }
    orientation = orientation || (await jpegOrientation(file)); // the browser's own: a JPEG's
    if (bmp.width * bmp.height > ui.limits.max_pixels) {
      toast(
        `${bmp.width}×${bmp.height} is more than this server's limit of ` +
          `${Math.round(ui.limits.max_pixels / 1e6)} megapixels`,
        "error",
      );
      bmp.close();
      return;
    }
    $("toast").hidden = true; // an older refusal or another photo's news
    const doc = newDoc(file, name || file.name || "photo.png", bmp, orientation);
    ui.docs.push(doc);
    endSelection();
    D = doc;
    resizeView();
    fit();
    setView("mask");
    setStatus();
    renderDocs();
  }

  // JPEG compression noise around a mask's strokes is not the hole: as masks.load_mask does
  // (JPEG_MASK_THRESHOLD), a JPEG file (told by its first bytes) is read from 128 up.
  async function maskThreshold(file) {
    const head = new Uint8Array(await file.slice(0, 3).arrayBuffer());
    return head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff ? 128 : 1;
  }

  async function loadMaskFile(file) {
    if (!file || !D || ui.busy) return;
    try {
      if (file.size === 0) throw new UserError(`${file.name} is empty (0 bytes)`);
      const threshold = await maskThreshold(file);
      const c = await grayToAlpha(file, D.W, D.H, threshold, D.orientation).catch((e) => {
        if (e instanceof UserError) throw new UserError(`${file.name}: ${e.message}`);
        throw new UserError(`${file.name}: not an image this browser can read`);
      });
      endSelection();
      layerStep(D.mask, { type: "image", canvas: c }, "mask file");
      if (D.view !== "mask") setView("mask");
      const share = holeShare(c);
      if (share > INVERTED_MASK_SHARE) {
        toast(
          `That mask makes ${Math.round(share * 100)} % of the photo the hole; white marks ` +
            "what to fill (press I to invert it)",
        );
      } else toast(D.maskHasPixels ? "Mask loaded" : "That mask is empty (all black)");
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

  function downloadResult() {
    if (!D || !D.result) return;
    download(D.result.blob, `${baseName(D)}_inpainted.png`);
    if (!resultStale(D)) markSaved(D);
    renderDocs();
  }

  async function downloadAll() {
    const done = ui.docs.filter((d) => d.result);
    if (!done.length) {
      toast("No results yet: inpaint a photo first");
      return;
    }
    const used = new Set();
    const files = [];
    for (const doc of done) {
      let name = `${baseName(doc)}_inpainted.png`;
      for (let i = 2; used.has(name); i++) name = `${baseName(doc)}_${i}_inpainted.png`;
      used.add(name);
      files.push({ name, data: new Uint8Array(await doc.result.blob.arrayBuffer()) });
    }
    download(zipStore(files), "edgefill_results.zip");
    for (const doc of done) if (!resultStale(doc)) markSaved(doc);
    renderDocs();
    const skipped = ui.docs.length - done.length;
    const stale = done.filter(resultStale).map((d) => d.name);
    const notes = [];
    if (skipped) notes.push(`${skipped} photo${skipped > 1 ? "s have" : " has"} no result yet`);
    if (stale.length) notes.push(`outdated, changed since their fill: ${stale.join(", ")}`);
    toast(
      `Downloading ${done.length} result${done.length > 1 ? "s" : ""} as one ZIP` +
        (notes.length ? ` (${notes.join("; ")})` : ""),
      stale.length ? "error" : "info",
    );
  }

  // A ZIP of PNGs, stored (PNG is compressed already): one download instead of one per photo.
  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();

  function crc32(data) {
    let c = 0xffffffff;
    for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function zipStore(files) {
    const parts = [];
    const central = [];
    let offset = 0;
    const enc = new TextEncoder();
    for (const f of files) {
      const name = enc.encode(f.name);
      const crc = crc32(f.data);
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true);
      local.setUint16(4, 20, true);
      local.setUint16(6, 0x0800, true); // UTF-8 names
      local.setUint16(12, 0x21, true); // 1980-01-01
      local.setUint32(14, crc, true);
      local.setUint32(18, f.data.length, true);
      local.setUint32(22, f.data.length, true);
      local.setUint16(26, name.length, true);
      const dir = new DataView(new ArrayBuffer(46));
      dir.setUint32(0, 0x02014b50, true);
      dir.setUint16(4, 20, true);
      dir.setUint16(6, 20, true);
      dir.setUint16(8, 0x0800, true);
      dir.setUint16(14, 0x21, true);
      dir.setUint32(16, crc, true);
      dir.setUint32(20, f.data.length, true);
      dir.setUint32(24, f.data.length, true);
      dir.setUint16(28, name.length, true);
      dir.setUint32(42, offset, true);
      parts.push(local, name, f.data);
      central.push(dir, name);
      offset += 30 + name.length + f.data.length;
    }
    const size = central.reduce((n, p) => n + p.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, files.length, true);
    end.setUint16(10, files.length, true);
    end.setUint32(12, size, true);
    end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  // ------------------------------------------------------------------------ dialogs

  function confirmDialog(title, text, yes) {
    const dlg = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    dlg.returnValue = "";
    dlg.showModal();
    $("confirm-no").focus();
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"), { once: true });
    });
  }

  // ------------------------------------------------------------------------ drawing

  function setTool(tool) {
    if (tool !== "select") endSelection();
    ui.tool = tool;
    if (D && tool === "select" && D.view !== "mask") setView("mask");
    syncSize();
    if (D && D.view === "mask") showHint(HINTS[tool === "select" ? "select" : "mask"]);
    refreshUI();
    updateCursor();
  }

  function setSize(v) {
    const size = Math.round(Math.min(MAX_SIZE, Math.max(MIN_SIZE, v)));
    ui.sizes[sizeKey()] = size;
    syncSize();
    updateCursor();
  }

  let stroke = null; // {layer, op, pointerId, label}
  let dragBox = null; // {pointerId, box}
  let pan = null; // {pointerId, x, y, vx, vy}
  let pinch = null; // {dist, cx, cy}
  let comparing = null;
  const pointers = new Map();
  let lastPointer = null;

  // The layer a stroke would paint on now, or null.
  function canPaint() {
    if (!D || ui.busy) return null;
    if (D.view === "mask") {
      if (ui.tool !== "select") return D.mask;
      if (ui.selectMode === "box") return null;
      const sel = startSelection();
      return ui.selectMode === "object" ? sel.object : sel.background;
    }
    if (D.view === "edges" && D.edges.base) return D.edges;
    return null;
  }

  function startStroke(e) {
    const layer = canPaint();
    if (!layer) return;
    const size = ui.sizes[sizeKey()];
    const selecting = ui.tool === "select";
    const op = {
      type: "stroke",
      erase: !selecting && ui.tool === "eraser",
      width: Math.max(1, size / D.vt.s),
      points: [toImage(e.clientX, e.clientY)],
    };
    const edges = D.view === "edges";
    const label = selecting
      ? "selection scribble"
      : `${edges ? "edge" : "mask"} ${op.erase ? "erase" : edges ? "line" : "brush stroke"}`;
    stroke = { layer, op, pointerId: e.pointerId, label, selecting };
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
    const { layer, op, label, selecting } = stroke;
    stroke = null;
    if (cancel) {
      layer.render();
    } else if (selecting) {
      op.id = uid++;
      layer.ops.push(op); // scribbles are inputs to the selection, not mask history
      requestSelection();
    } else {
      layerStep(layer, op, label, true);
      if (layer === D.mask && ui.settings.autoRun && D.maskHasPixels && !op.erase) inpaint(true);
    }
    refreshUI();
    requestRender();
  }

  function startBox(e) {
    startSelection();
    const p = toImage(e.clientX, e.clientY);
    dragBox = { pointerId: e.pointerId, box: [p[0], p[1], p[0], p[1]] };
  }

  function endBox(cancel) {
    const box = dragBox.box;
    dragBox = null;
    const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
    const b = [
      clamp(Math.min(box[0], box[2]), D.W),
      clamp(Math.min(box[1], box[3]), D.H),
      clamp(Math.max(box[0], box[2]), D.W),
      clamp(Math.max(box[1], box[3]), D.H),
    ];
    if (cancel || b[2] - b[0] < 3 || b[3] - b[1] < 3) {
      if (!cancel) toast("Drag to draw a box around the object");
      requestRender();
      return;
    }
    D.selection.box = b;
    requestSelection();
  }

  function setCompare(clientX) {
    const r = view.getBoundingClientRect();
    const [x, , w] = imageRect();
    D.compare = Math.min(1, Math.max(0, (clientX - r.left - x) / w));
    requestRender();
  }

  function updateCursor(e) {
    const cur = $("brush-cursor");
    if (e) lastPointer = { x: e.clientX, y: e.clientY, type: e.pointerType };
    const boxing = !!D && D.view === "mask" && ui.tool === "select" && ui.selectMode === "box";
    const painting = !!D && !ui.busy && !boxing && !!currentLayer() && !pan && !pinch;
    view.classList.toggle("panning", !!pan || ui.spaceDown);
    view.classList.toggle("comparing", !!D && D.view === "result");
    view.classList.toggle("boxing", boxing);
    if (!painting || ui.spaceDown || !lastPointer || lastPointer.type === "touch") {
      cur.hidden = true;
      return;
    }
    const size = ui.sizes[sizeKey()];
    const r = stage.getBoundingClientRect();
    cur.hidden = false;
    cur.className =
      ui.tool === "select" ? `select-${ui.selectMode}` : ui.tool === "eraser" ? "eraser" : "";
    cur.style.width = cur.style.height = `${size}px`;
    cur.style.left = `${lastPointer.x - r.left}px`;
    cur.style.top = `${lastPointer.y - r.top}px`;
  }

  view.addEventListener("pointerdown", (e) => {
    if (!D || ui.busy) return;
    view.setPointerCapture(e.pointerId);
    const r = view.getBoundingClientRect();
    pointers.set(e.pointerId, { x: e.clientX - r.left, y: e.clientY - r.top });
    if (pointers.size === 2) {
      // Second finger: the touch is a pinch, not a stroke.
      endStroke(true);
      if (dragBox) endBox(true);
      comparing = null;
      const [a, b] = [...pointers.values()];
      pinch = { dist: Math.hypot(a.x - b.x, a.y - b.y), cx: (a.x + b.x) / 2, cy: (a.y + b.y) / 2 };
      return;
    }
    if (pointers.size > 2) return;
    if (e.button === 1 || e.button === 2 || ui.spaceDown) {
      pan = { pointerId: e.pointerId, x: e.clientX, y: e.clientY, vx: D.vt.x, vy: D.vt.y };
      updateCursor(e);
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    if (D.view === "result") {
      comparing = e.pointerId;
      setCompare(e.clientX);
      return;
    }
    if (D.view === "mask" && ui.tool === "select" && ui.selectMode === "box") {
      startBox(e);
      return;
    }
    startStroke(e);
  });

  view.addEventListener("pointermove", (e) => {
    if (!D) return;
    const r = view.getBoundingClientRect();
    if (pointers.has(e.pointerId)) {
      pointers.set(e.pointerId, { x: e.clientX - r.left, y: e.clientY - r.top });
    }
    if (pinch && pointers.size >= 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a.x - b.x, a.y - b.y);
      const cx = (a.x + b.x) / 2;
      const cy = (a.y + b.y) / 2;
      D.vt.x += cx - pinch.cx;
      D.vt.y += cy - pinch.cy;
      if (pinch.dist > 0) zoomAt(cx, cy, dist / pinch.dist);
      pinch = { dist, cx, cy };
      D.fitted = false;
      requestRender();
    } else if (pan && pan.pointerId === e.pointerId) {
      D.vt.x = pan.vx + e.clientX - pan.x;
      D.vt.y = pan.vy + e.clientY - pan.y;
      D.fitted = false;
      requestRender();
    } else if (comparing === e.pointerId) {
      setCompare(e.clientX);
    } else if (dragBox && dragBox.pointerId === e.pointerId) {
      const p = toImage(e.clientX, e.clientY);
      dragBox.box[2] = p[0];
      dragBox.box[3] = p[1];
      requestRender();
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
    if (dragBox && dragBox.pointerId === e.pointerId) endBox(e.type === "pointercancel");
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
      if (!D) return;
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
    if (!D) return;
    const step = e.shiftKey ? 0.1 : 0.02;
    if (e.key === "ArrowLeft") D.compare = Math.max(0, D.compare - step);
    else if (e.key === "ArrowRight") D.compare = Math.min(1, D.compare + step);
    else if (e.key === "Home") D.compare = 0;
    else if (e.key === "End") D.compare = 1;
    else return;
    e.preventDefault();
    requestRender();
  });

  // ------------------------------------------------------------------------ wiring

  const photoInput = $("photo-input");
  const maskInput = $("mask-input");
  function tooManyPhotos() {
    toast(`At most ${MAX_DOCS} photos can be open at once; close one first`, "error");
  }

  function pickPhoto() {
    if (ui.busy) return;
    if (ui.docs.length >= MAX_DOCS) {
      // Said before the file picker opens, not after a choice that cannot be used.
      tooManyPhotos();
      return;
    }
    photoInput.click();
  }
  for (const id of ["open-photo", "open-photo-2", "add-photo"]) {
    $(id).addEventListener("click", pickPhoto);
  }
  photoInput.addEventListener("change", () => {
    const files = [...photoInput.files];
    photoInput.value = "";
    openPhotos(files);
  });
  $("load-mask").addEventListener("click", () => maskInput.click());
  $("invert-mask").addEventListener("click", invertMask);
  $("grow-mask").addEventListener("click", growMask);
  maskInput.addEventListener("change", () => {
    loadMaskFile(maskInput.files[0]);
    maskInput.value = "";
  });

  // Tabs: click, or arrow keys / Home / End move between the enabled ones (WAI-ARIA tabs).
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => !ui.busy && setView(tab.dataset.view));
    tab.addEventListener("keydown", (e) => {
      const enabled = tabs.filter((t) => !t.disabled);
      const i = enabled.indexOf(tab);
      let next = null;
      if (e.key === "ArrowRight") next = enabled[(i + 1) % enabled.length];
      else if (e.key === "ArrowLeft") next = enabled[(i - 1 + enabled.length) % enabled.length];
      else if (e.key === "Home") next = enabled[0];
      else if (e.key === "End") next = enabled[enabled.length - 1];
      if (!next) return;
      e.preventDefault();
      e.stopPropagation();
      next.focus();
      if (!ui.busy) setView(next.dataset.view);
    });
  }

  $("tool-brush").addEventListener("click", () => setTool("brush"));
  $("tool-eraser").addEventListener("click", () => setTool("eraser"));
  $("tool-select").addEventListener("click", () => setTool("select"));
  for (const mode of ["box", "object", "background"]) {
    $(`select-${mode}`).addEventListener("click", () => setSelectMode(mode));
  }
  $("select-done").addEventListener("click", finishSelection);
  $("brush-size").addEventListener("input", (e) => setSize(Number(e.target.value)));
  $("undo").addEventListener("click", () => historyStep(false));
  $("redo").addEventListener("click", () => historyStep(true));
  $("clear").addEventListener("click", clearLayer);
  $("fit").addEventListener("click", fit);
  $("zoom-hole").addEventListener("click", zoomToHole);
  $("inpaint").addEventListener("click", () => inpaint());
  $("detect-damage").addEventListener("click", detectDamage);
  $("cancel").addEventListener("click", () => ui.abort && ui.abort.abort());
  $("keep-result").addEventListener("click", keepResult);
  $("show-edges-again").addEventListener("click", () => setView("edges"));
  $("stale-rerun").addEventListener("click", () => inpaint());
  $("download-result").addEventListener("click", downloadResult);
  $("download-mask").addEventListener("click", async () => {
    if (D) download(await D.mask.toBlob(true), `${baseName(D)}_mask.png`);
  });
  $("download-all").addEventListener("click", downloadAll);

  const help = $("help");
  const settings = $("settings");
  // Opened at its top: showModal focuses the Close button at the bottom, which scrolled a
  // phone-sized dialog down past its title.
  function showHelp() {
    help.showModal();
    help.scrollTop = 0;
  }
  $("help-button").addEventListener("click", showHelp);
  $("help-close").addEventListener("click", () => help.close());
  $("settings-button").addEventListener("click", () => {
    showSettings();
    settings.showModal();
  });
  $("settings-close").addEventListener("click", () => settings.close());
  $("settings-reset").addEventListener("click", () => {
    ui.settings = { ...DEFAULT_SETTINGS };
    saveSettings();
    showSettings();
    refreshUI();
  });
  settings.addEventListener("input", readSettings);
  settings.addEventListener("change", readSettings);
  const confirmDlg = $("confirm");
  $("confirm-yes").addEventListener("click", () => confirmDlg.close("yes"));
  $("confirm-no").addEventListener("click", () => confirmDlg.close("no"));

  // Leaving or reloading the page with work not downloaded asks first (the browser's dialog).
  window.addEventListener("beforeunload", (e) => {
    if (ui.docs.some(isDirty)) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  // Drag and drop photos anywhere on the page.
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
    openPhotos(e.dataTransfer?.files);
  });

  // Paste a photo (e.g. a screenshot) with Ctrl+V.
  window.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      e.preventDefault();
      openPhoto(file, file.name && file.name !== "image.png" ? file.name : "pasted.png");
    }
  });

  function switchView(name) {
    if (!D || ui.busy) return;
    if (name === "edges" && !D.maskHasPixels) {
      explainEmptyMask();
      return;
    }
    if (name === "result" && !D.result) {
      toast("No result yet: paint the mask and press Ctrl+Enter to inpaint");
      return;
    }
    setView(name);
  }

  window.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing =
      (t instanceof HTMLInputElement && t.type !== "range") || t instanceof HTMLSelectElement;
    if (typing || help.open || settings.open || confirmDlg.open) return;
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
    } else if (key === "s") {
      setTool("select");
    } else if (e.key === "[") {
      setSize(ui.sizes[sizeKey()] / 1.25);
    } else if (e.key === "]") {
      setSize(ui.sizes[sizeKey()] * 1.25);
    } else if (key === "1" || key === "2" || key === "3") {
      switchView(["mask", "edges", "result"][Number(key) - 1]);
    } else if (key === "f") {
      fit();
    } else if (key === "h") {
      zoomToHole();
    } else if (key === "d") {
      if (!$("detect-damage").hidden) detectDamage();
    } else if (key === "i") {
      invertMask();
    } else if (key === "g") {
      growMask();
    } else if (key === "o") {
      pickPhoto();
    } else if (e.key === ",") {
      $("settings-button").click();
    } else if (e.key === "?") {
      showHelp();
    } else if (e.key === " ") {
      if (t instanceof HTMLButtonElement || t.getAttribute("role") === "tab") return;
      ui.spaceDown = true;
      updateCursor();
    } else if (e.key === "Escape") {
      if (ui.abort) ui.abort.abort();
      else if (D && D.selection) setTool("brush");
      else return;
    } else if (e.key === "Enter" && D && D.selection) {
      finishSelection();
    } else {
      return;
    }
    e.preventDefault();
  });
  window.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      ui.spaceDown = false;
      updateCursor();
    }
  });

  new ResizeObserver(resizeView).observe(view);

  // For tests and the curious: read-only helpers (no state is changed through them).
  window.edgefill = {
    imageToClient: (x, y) => toClient(x, y),
    clientToImage: (x, y) => toImage(x, y),
    get view() {
      return D ? D.view : "mask";
    },
    get busy() {
      return ui.busy;
    },
    get size() {
      return D ? [D.W, D.H] : [0, 0];
    },
    get edgesReady() {
      return (
        !!D && D.view === "edges" && !!D.edges.base && D.edgesKey === edgesKeyOf(D) && !ui.busy
      );
    },
    get docs() {
      return ui.docs.map((d) => ({ name: d.name, size: [d.W, d.H], results: d.results.length }));
    },
    get active() {
      return ui.docs.indexOf(D);
    },
    get history() {
      return D ? { undo: D.undo.map((e) => e.label), redo: D.redo.map((e) => e.label) } : null;
    },
    get uncertainShown() {
      return !!D && !!D.doubt;
    },
    get resultStale() {
      return !!D && resultStale(D);
    },
    get resultIndex() {
      return D && D.result ? D.results.indexOf(D.result) : -1;
    },
    get settings() {
      return { ...ui.settings };
    },
    get requests() {
      return ui.requests;
    },
    get photoVersion() {
      return D ? D.fileId : 0;
    },
    get scale() {
      return D ? D.vt.s : 0;
    },
  };

  document.body.dataset.view = "mask";
  resizeView();
  refreshUI();
  renderDocs();
  loadHealth();
})();
