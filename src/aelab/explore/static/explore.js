// aelab explore: the page's script. It talks only to the server that served it (relative URLs),
// and draws every image from the float values the server's model returned (uint8 = round(v * 255)).
// window.aelab holds what each panel last sent and received, for tests and curious users.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const INK = 0.05; // the server calls a drawing with no pixel above this empty
  const S = window.aelab = { busy: 0, pending: 0, ready: false, info: null, picked: null, seed: 0,
    draw: { count: 0 }, slider: { count: 0 }, map: { count: 0 }, interp: { count: 0 }, samples: {} };

  function showMessage(text) { $("message").textContent = text || ""; $("message").hidden = !text; }

  async function api(path, body) {
    S.busy++;
    try {
      const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(body) };
      let res;
      try { res = await fetch("api/" + path, opts); } catch (e) {
        throw new Error("the aelab explore server does not answer (was it stopped?)");
      }
      let data;
      try { data = await res.json(); } catch (e) { throw new Error(`the server answered ${res.status} without JSON`); }
      if (!res.ok) throw new Error(data.error || `the server answered ${res.status}`);
      showMessage("");
      return data;
    } finally { S.busy--; }
  }

  // One call of fn at a time; while it runs, only the newest waiting call is kept (sliders, hover).
  function latest(fn) {
    let running = false, next = null;
    const go = async (args) => {
      running = true; S.pending++;
      try { await fn(...args); } catch (e) { showMessage(e.message); }
      running = false;
      if (next) { const a = next; next = null; S.pending--; go(a); } else S.pending--;
    };
    return (...args) => { if (running) next = args; else go(args); };
  }

  function paint(canvas, values, isFloat, x = 0, y = 0) {
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const g = isFloat ? Math.round(values[i] * 255) : values[i];
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g; img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, x, y);
  }
  function tile(values, isFloat, caption) {
    const fig = document.createElement("figure"), c = document.createElement("canvas");
    c.width = c.height = 28; c.className = "digit"; paint(c, values, isFloat); fig.append(c);
    if (caption !== undefined) { const cap = document.createElement("figcaption"); cap.textContent = caption; fig.append(cap); }
    return fig;
  }
  const blank = (canvas) => canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);

  // --- drawing pad -------------------------------------------------------------------------
  function setupPad() {
    const pad = $("pad"), ctx = pad.getContext("2d", { willReadFrequently: true }), cell = pad.width / 28;
    const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
    const at = (e) => { const r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
    const dot = (p) => { ctx.fillStyle = "#fff"; ctx.beginPath(); ctx.arc(p[0], p[1], cell * 1.1, 0, 2 * Math.PI); ctx.fill(); };
    const line = (a, b) => { ctx.strokeStyle = "#fff"; ctx.lineWidth = cell * 2.2; ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke(); };
    S.padValues = () => { // the pad as 28x28 floats in [0, 1]: the mean of each cell
      const d = ctx.getImageData(0, 0, pad.width, pad.height).data, out = new Array(784).fill(0);
      for (let y = 0; y < pad.height; y++) for (let x = 0; x < pad.width; x++)
        out[Math.floor(y / cell) * 28 + Math.floor(x / cell)] += d[4 * (y * pad.width + x)];
      return out.map((v) => v / (cell * cell * 255));
    };
    let last = null;
    pad.addEventListener("pointerdown", (e) => { e.preventDefault(); pad.setPointerCapture(e.pointerId);
      last = at(e); dot(last); reconstruct(); });
    pad.addEventListener("pointermove", (e) => { if (!last) return; const p = at(e); line(last, p); last = p; reconstruct(); });
    const end = () => { if (last) { last = null; reconstruct(); } };
    pad.addEventListener("pointerup", end); pad.addEventListener("pointercancel", end);
    $("clear").addEventListener("click", () => { clear(); reconstruct(); });
    $("center").addEventListener("change", () => reconstruct());
    clear();
  }

  const reconstruct = latest(async () => {
    const pad = S.padValues();
    if (Math.max(...pad) <= INK) {
      for (const id of ["draw-input", "draw-output", "code-bars"]) blank($(id));
      $("neighbours").replaceChildren(); $("code-caption").textContent = "";
      $("draw-status").textContent = "The pad is empty: draw a digit.";
      Object.assign(S.draw, { pad, input: null, code: null, reconstruction: null });
      return;
    }
    const center = $("center").checked;
    const r = await api("reconstruct", { image: pad, center });
    Object.assign(S.draw, { pad, center, input: r.input, code: r.code, reconstruction: r.reconstruction,
                            neighbours: r.neighbours, count: S.draw.count + 1 });
    paint($("draw-input"), r.input, true); paint($("draw-output"), r.reconstruction, true);
    bars($("code-bars"), r.code);
    $("neighbours").replaceChildren(...r.neighbours.map((n, i) =>
      tile(r.neighbour_images[i], false, `${n.label} · ${n.distance.toFixed(2)}`)));
    $("draw-status").textContent = "Reconstructed by the run's model; labels and code distances below.";
  });

  function bars(canvas, code) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, n = code.length;
    const lo = Math.min(0, ...code), hi = Math.max(0, ...code), span = (hi - lo) || 1, zero = 4 + (h - 8) * hi / span;
    ctx.clearRect(0, 0, w, h);
    code.forEach((v, i) => {
      ctx.fillStyle = v >= 0 ? "#4c78a8" : "#e45756";
      const bh = Math.abs(v) / span * (h - 8);
      ctx.fillRect(i * w / n, v >= 0 ? zero - bh : zero, Math.max(1, w / n - 1), bh);
    });
    ctx.fillStyle = "#8892a0"; ctx.fillRect(0, zero, w, 1);
    $("code-caption").textContent = `${n} numbers, from ${lo.toFixed(2)} to ${hi.toFixed(2)}`;
  }

  // --- picking a digit, sliders ------------------------------------------------------------
  async function pick(index) {
    const p = await api("point", { index });
    S.picked = p; S.slider.start = p.code;
    paint($("picked"), p.image, false);
    $("picked-caption").textContent = `validation digit ${p.index} (a ${p.label})`;
    for (const c of $("gallery").querySelectorAll("canvas")) c.classList.toggle("selected", +c.dataset.index === p.index);
    for (const s of $("sliders").querySelectorAll("input")) s.value = 0;
    sliderDecode(); drawMap();
  }

  function setupSliders() {
    const dirs = S.info.directions, box = $("sliders");
    if (dirs.axes === "code") $("slider-axes").textContent = "the code's own two axes";
    dirs.vectors.forEach((v, k) => {
      const label = document.createElement("label"), input = document.createElement("input"), out = document.createElement("output");
      const name = dirs.axes === "code" ? `code ${k + 1}` : `PC ${k + 1} (${(100 * dirs.explained[k]).toFixed(1)}%)`;
      Object.assign(input, { type: "range", min: -3, max: 3, step: 0.05, value: 0, id: `slider-${k}` });
      input.addEventListener("input", () => sliderDecode());
      label.append(name, input, out); box.append(label);
    });
    $("slider-reset").addEventListener("click", () => { for (const s of box.querySelectorAll("input")) s.value = 0; sliderDecode(); });
    $("random-digit").addEventListener("click", () => pick(Math.floor(Math.random() * S.info.n_map)).catch((e) => showMessage(e.message)));
    S.info.gallery.forEach((g, i) => {  // buttons, so a keyboard reaches them (Tab, Enter)
      const button = document.createElement("button"), fig = tile(S.info.gallery_images[i], false);
      Object.assign(button, { type: "button", title: `a ${g.label}` });
      button.setAttribute("aria-label", `a ${g.label}, validation digit ${g.index}`);
      const canvas = fig.querySelector("canvas");  // the canvas alone: a button holds no <figure>
      canvas.dataset.index = g.index;
      button.append(canvas);
      button.addEventListener("click", () => pick(g.index).catch((e) => showMessage(e.message)));
      $("gallery").append(button);
    });
  }

  const sliderDecode = latest(async () => {
    if (!S.slider.start) return;
    const dirs = S.info.directions, code = S.slider.start.slice(), values = [];
    $("sliders").querySelectorAll("input").forEach((s, k) => {
      const t = +s.value; values.push(t); s.nextSibling.textContent = `${t >= 0 ? "+" : ""}${t.toFixed(2)} σ`;
      for (let j = 0; j < code.length; j++) code[j] += t * dirs.scales[k] * dirs.vectors[k][j];
    });
    const r = await api("decode", { codes: [code] });
    Object.assign(S.slider, { values, code, decoded: r.images[0], count: S.slider.count + 1 });
    paint($("slider-output"), r.images[0], true);
  });

  // --- map -----------------------------------------------------------------------------------
  const M = { base: null };
  function setupMap(m) {
    const c = $("map"), pad = 18, n = m.x.length;
    const [x0, x1] = [Math.min(...m.x), Math.max(...m.x)], [y0, y1] = [Math.min(...m.y), Math.max(...m.y)];
    const sx = (x) => pad + (x - x0) / ((x1 - x0) || 1) * (c.width - 2 * pad);
    const sy = (y) => c.height - pad - (y - y0) / ((y1 - y0) || 1) * (c.height - 2 * pad);
    const toCode = (px, py) => [x0 + (px - pad) / (c.width - 2 * pad) * ((x1 - x0) || 1),
                                y0 + (c.height - pad - py) / (c.height - 2 * pad) * ((y1 - y0) || 1)];
    M.xy = Array.from({ length: n }, (_, i) => [sx(m.x[i]), sy(m.y[i])]);
    M.base = document.createElement("canvas"); M.base.width = c.width; M.base.height = c.height;
    const ctx = M.base.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
    M.xy.forEach(([x, y], i) => { ctx.fillStyle = PALETTE[m.labels[i] % 10]; ctx.globalAlpha = 0.75;
      ctx.beginPath(); ctx.arc(x, y, 2.4, 0, 2 * Math.PI); ctx.fill(); });
    ctx.globalAlpha = 1; ctx.fillStyle = "#5b6575"; ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(m.axes[0] + " →", c.width - 70, c.height - 4);
    ctx.save(); ctx.translate(11, 70); ctx.rotate(-Math.PI / 2); ctx.fillText(m.axes[1] + " →", 0, 0); ctx.restore();
    const pct = m.method === "pca" ? ` (PCA of the codes: ${(100 * (m.explained[0] + m.explained[1])).toFixed(1)}% of their variance)` : "";
    $("map-caption").textContent = `${n} validation digits, coloured by label${pct}. Hover to decode, click to pick.`;
    $("legend").replaceChildren(...PALETTE.map((col, d) => { const s = document.createElement("span");
      s.style.setProperty("--c", col); s.textContent = d; return s; }));
    const local = (e) => { const r = c.getBoundingClientRect();
      return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height]; };
    const nearest = (p) => { let best = null, bd = 100; // within 10 px
      M.xy.forEach(([x, y], i) => { const d = (x - p[0]) ** 2 + (y - p[1]) ** 2; if (d < bd) { bd = d; best = i; } });
      return best; };
    const target = (e) => { const p = local(e), i = nearest(p);
      return i !== null ? ["point", i] : (S.info.latent_dim === 2 ? ["code", toCode(...p)] : null); };
    c.addEventListener("pointermove", (e) => { const t = target(e); if (t) { M.hover = t; mapDecode(...t); drawMap(); } });
    c.addEventListener("pointerdown", (e) => { const t = target(e); if (!t) return;
      M.hover = t; mapDecode(...t); if (t[0] === "point") pick(t[1]).catch((er) => showMessage(er.message)); });
    S.mapPoint = (i) => { const r = c.getBoundingClientRect();
      return [r.left + M.xy[i][0] * r.width / c.width, r.top + M.xy[i][1] * r.height / c.height]; };
    drawMap();
  }

  function drawMap() {
    if (!M.base) return;
    const c = $("map"), ctx = c.getContext("2d");
    ctx.drawImage(M.base, 0, 0);
    const ring = (i, color) => { const [x, y] = M.xy[i]; ctx.strokeStyle = color; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke(); };
    if (S.picked) ring(S.picked.index, "#1d2430");
    if (M.hover && M.hover[0] === "point") ring(M.hover[1], "#2f6fbf");
  }

  const mapDecode = latest(async (kind, arg) => {
    if (kind === "point") {
      const p = await api("point", { index: arg });
      Object.assign(S.map, { last: { index: p.index, label: p.label, code: p.code, decoded: p.decoded }, count: S.map.count + 1 });
      paint($("map-original"), p.image, false);
      $("map-original-caption").textContent = `validation digit ${p.index} (a ${p.label})`;
      paint($("map-decoded"), p.decoded, true);
    } else {
      const r = await api("decode", { codes: [arg] });
      Object.assign(S.map, { last: { index: null, code: arg, decoded: r.images[0] }, count: S.map.count + 1 });
      blank($("map-original"));
      $("map-original-caption").textContent = `code (${arg[0].toFixed(2)}, ${arg[1].toFixed(2)})`;
      paint($("map-decoded"), r.images[0], true);
    }
  });

  // --- interpolation -------------------------------------------------------------------------
  const interpolate = latest(async () => {
    const { a, b } = S.interp;
    if (!a || !b) return;
    paint($("interp-a"), a.image, false); paint($("interp-b"), b.image, false);
    const steps = Math.min(32, Math.max(2, Math.round(+$("steps").value) || 10));
    $("steps").value = steps;  // show the count drawn (2 to 32), not what was typed
    const r = await api("interpolate", { a: a.code, b: b.code, steps });
    Object.assign(S.interp, { codes: r.codes, images: r.images, count: S.interp.count + 1 });
    $("interp-strip").replaceChildren(...r.images.map((img) => tile(img, true)));
  });

  async function setupInterp() {
    const first = (label, fallback) => (S.info.gallery.find((g) => g.label === label) || S.info.gallery[fallback] || S.info.gallery[0]).index;
    const [a, b] = await Promise.all([api("point", { index: first(1, 0) }), api("point", { index: first(7, 1) })]);
    Object.assign(S.interp, { a, b });
    $("set-a").addEventListener("click", () => { if (S.picked) { S.interp.a = S.picked; interpolate(); } });
    $("set-b").addEventListener("click", () => { if (S.picked) { S.interp.b = S.picked; interpolate(); } });
    $("steps").addEventListener("change", () => interpolate());
    interpolate();
  }

  // --- samplers ------------------------------------------------------------------------------
  function samplerBox(name) {
    let box = $(`sampler-${name}`);
    if (!box) {
      box = document.createElement("div"); box.className = "sampler"; box.id = `sampler-${name}`;
      const h = document.createElement("h3"), st = document.createElement("span"), c = document.createElement("canvas");
      h.textContent = name; st.className = "state"; h.append(st); c.width = c.height = 4 * 28;
      box.append(h, c); $("samplers").append(box);
    }
    return box;
  }

  async function loadSamples(name) {
    const r = await api("samples", { sampler: name, n: 16, seed: S.seed });
    S.samples[name] = r;
    const c = samplerBox(name).querySelector("canvas");
    r.images.forEach((img, i) => paint(c, img, true, 28 * (i % 4), 28 * Math.floor(i / 4)));
  }

  async function refreshSamplers(answer) { // answer: a status the server just gave (the fit request's)
    const st = answer || await api("samplers");
    S.samplerStatus = st;
    if (st.samplers.some((s) => s.state === "fitting")) S.sawFitting = true;
    const loads = [];
    for (const s of st.samplers) {
      const box = samplerBox(s.name);
      if (s.recommended) box.querySelector("h3").firstChild.textContent = `${s.name} (recommended) `;
      box.classList.toggle("fitting", s.state === "fitting"); box.classList.toggle("error", s.state === "error");
      box.querySelector(".state").textContent = s.state === "fitting" ? "fitting..." : s.state === "error" ? `error: ${s.message}` : s.state;
      if (s.state === "ready" && !S.samples[s.name]) loads.push(loadSamples(s.name));
      if (s.state !== "ready") { delete S.samples[s.name]; blank(box.querySelector("canvas")); }
    }
    const missing = st.samplers.filter((s) => s.state === "not fitted" || s.state === "error");
    $("fit").disabled = st.fitting || missing.length === 0;
    $("fit-status").textContent = st.fitting ? "fitting... (a gmm can take minutes)"
      : missing.length ? `Not fitted yet: ${missing.map((s) => s.name).join(", ")}.` : "Every sampler of this run is fitted.";
    $("seed-label").textContent = `seed ${S.seed}`;
    await Promise.all(loads);
    if (st.fitting && !S.polling) {
      S.polling = true;
      setTimeout(() => { S.polling = false; refreshSamplers().catch((e) => showMessage(e.message)); }, 1000);
    }
  }

  function setupSamplers() {
    $("fit").addEventListener("click", async () => {
      try { $("fit").disabled = true; await refreshSamplers(await api("fit", {})); } catch (e) { showMessage(e.message); }
    });
    $("new-samples").addEventListener("click", async () => {
      S.seed += 1; S.samples = {};
      try { await refreshSamplers(); } catch (e) { showMessage(e.message); }
    });
    return refreshSamplers();
  }

  async function start() {
    try {
      S.info = await api("info");
      const i = S.info;
      $("run-info").textContent = `run folder ${i.run} · ${i.kind === "vae" ? "VAE" : "autoencoder"} · ${i.latent_dim}-number code · ${i.n_train} training digits`;
      setupPad(); setupSliders();
      setupMap(await api("map"));
      await Promise.all([pick(S.info.gallery[0].index), setupInterp(), setupSamplers()]);
      S.ready = true;
    } catch (e) { showMessage(e.message); }
  }
  start();
})();
