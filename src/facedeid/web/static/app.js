"use strict";
const $ = (id) => document.getElementById(id);
const state = { methods: [], files: [], faces: [], skip: new Set(), image: null, controller: null };

function header(obj) { return { "X-Facedeid-Request": JSON.stringify(obj) }; }

async function api(path, body, opts) {
  const r = await fetch(path, { method: "POST", body, headers: header(opts), signal: state.controller ? state.controller.signal : undefined });
  const data = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}

function paramControl(p) {
  const label = document.createElement("label");
  label.textContent = p.name;
  let input;
  if (p.choices) {
    input = document.createElement("select");
    p.choices.forEach((c) => { const o = document.createElement("option"); o.value = c; o.textContent = c; input.appendChild(o); });
    input.value = p.default;
  } else if (p.type === "bool") {
    input = document.createElement("input"); input.type = "checkbox"; input.checked = !!p.default;
  } else if (p.secret) {
    input = document.createElement("input"); input.type = "password"; input.autocomplete = "off";
  } else if (p.min !== undefined) {
    input = document.createElement("input"); input.type = "range";
    Object.assign(input, { min: p.min, max: p.max, step: p.step, value: p.default });
    const out = document.createElement("output"); out.textContent = p.default;
    input.addEventListener("input", () => { out.textContent = input.value; });
    label.appendChild(out);
  } else {
    input = document.createElement("input"); input.type = p.type === "str" ? "text" : "number"; input.value = p.default;
  }
  input.dataset.param = p.name;
  input.dataset.kind = p.type;
  label.appendChild(input);
  return label;
}

function renderParams() {
  const m = state.methods.find((x) => x.name === $("method").value);
  const box = $("params"); box.innerHTML = "";
  if (!m) return;
  m.params.forEach((p) => box.appendChild(paramControl(p)));
  $("method-info").textContent = `${m.summary} — ${m.reference} (${m.kind})`;
}

function collectParams() {
  const out = {};
  document.querySelectorAll("#params [data-param]").forEach((el) => {
    out[el.dataset.param] = el.type === "checkbox" ? String(el.checked) : el.value;
  });
  return out;
}

function drawOriginal() {
  const c = $("original"); const img = state.image; if (!img) return;
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0);
  g.lineWidth = Math.max(2, img.naturalWidth / 300);
  state.faces.forEach((f, i) => {
    const [x0, y0, x1, y1] = f.box;
    const kept = state.skip.has(i);
    g.strokeStyle = kept ? "#1a3" : "#e22"; g.setLineDash(kept ? [8, 6] : []);
    g.strokeRect(x0, y0, x1 - x0, y1 - y0);
  });
}

const isVideo = (f) => f.type.startsWith("video/") || /\.(mp4|mov|m4v|mkv|avi|webm)$/i.test(f.name);

async function loadFile(file) {
  state.skip = new Set(); state.faces = [];
  if (isVideo(file)) {
    state.image = null; $("status").textContent = `video: ${file.name}`; $("run").disabled = false; return;
  }
  const url = URL.createObjectURL(file);
  state.image = await new Promise((res, rej) => { const im = new Image(); im.onload = () => res(im); im.onerror = rej; im.src = url; });
  drawOriginal();
  $("status").textContent = "detecting faces…";
  try {
    const d = await api("/api/detect", file, { detector: $("detector").value });
    state.faces = d.faces;
    $("status").textContent = `${d.faces.length} face(s) found`;
  } catch (e) { $("status").innerHTML = `<span class="error">${e.message}</span>`; }
  drawOriginal();
  $("run").disabled = false;
}

function showMetrics(r) {
  const m = r.metrics;
  const rows = [["faces", r.faces.length], ["anonymized", r.faces.filter((f) => f.anonymized).length]];
  Object.keys(m.identity_distance).forEach((rec) => {
    rows.push([`identity distance (${rec}, τ = ${m.threshold[rec]})`, m.identity_distance[rec].join(", ") || "–"]);
    rows.push([`de-identified (${rec})`, m.deidentified[rec].map((x) => (x ? "yes" : "NO")).join(", ") || "–"]);
  });
  rows.push(["SSIM", m.ssim], ["PSNR dB", m.psnr ?? "∞"], [`faces detected after (${m.detector})`, m.faces_detected_after]);
  $("metrics").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runVideo(file, prog) {
  const opts = { method: $("method").value, params: collectParams(), detector: $("detector").value };
  const job = await api("/api/video", file, opts);
  state.job = job.job; prog.max = job.frames || 1;
  for (;;) {
    if (state.controller.signal.aborted) { await fetch(`/api/video/${job.job}`, { method: "DELETE" }); throw new DOMException("cancelled", "AbortError"); }
    const st = await (await fetch(`/api/video/${job.job}`)).json();
    prog.value = st.done; $("status").textContent = `video: frame ${st.done}/${st.total}`;
    if (st.status === "error") throw new Error(st.error);
    if (st.status === "done") {
      const blob = await (await fetch(`/api/video/${job.job}/result`)).blob();
      const url = URL.createObjectURL(blob);
      $("result").hidden = true; const v = $("result-video"); v.hidden = false; v.src = url;
      const a = $("download"); a.href = url; a.download = file.name.replace(/\.[^.]+$/, "") + "_anonymized.mp4"; a.hidden = false;
      $("metrics").innerHTML = `<tr><th>frames</th><td>${st.total}</td></tr><tr><th>tracked faces</th><td>${st.tracks}</td></tr><tr><th>frames with uncertain coverage</th><td>${st.uncertain_frames}</td></tr>`;
      return;
    }
    await sleep(500);
  }
}

async function run() {
  state.controller = new AbortController();
  $("run").disabled = true; $("cancel").hidden = false;
  const prog = $("progress"); prog.hidden = false; prog.max = state.files.length; prog.value = 0;
  $("results").innerHTML = "";
  try {
    for (let i = 0; i < state.files.length; i++) {
      const file = state.files[i];
      if (isVideo(file)) { await runVideo(file, prog); continue; }
      $("result").hidden = false; $("result-video").hidden = true;
      $("status").textContent = `processing ${i + 1}/${state.files.length}: ${file.name}`;
      const opts = { method: $("method").value, params: collectParams(), detector: $("detector").value, skip: i === 0 ? [...state.skip] : [] };
      const r = await api("/api/anonymize", file, opts);
      const name = file.name.replace(/\.[^.]+$/, "") + "_anonymized." + r.extension;
      if (i === 0) {
        $("result").src = r.image; showMetrics(r);
        const a = $("download"); a.href = r.image; a.download = name; a.hidden = false;
      }
      const li = document.createElement("li");
      li.innerHTML = `<a href="${r.image}" download="${name}">${name}</a> — ${r.faces.length} face(s)`;
      $("results").appendChild(li);
      prog.value = i + 1;
    }
    $("status").textContent = "done";
  } catch (e) {
    $("status").innerHTML = e.name === "AbortError" ? "cancelled" : `<span class="error">${e.message}</span>`;
  } finally {
    state.controller = null; $("run").disabled = false; $("cancel").hidden = true;
  }
}

async function recover() {
  const file = $("recover-file").files[0];
  if (!file) { $("recover-status").textContent = "Choose a photo first."; return; }
  $("recover-status").textContent = "Recovering…";
  const opts = { password: $("recover-password").value, level: Number($("recover-level").value) };
  const r = await fetch("/api/recover", { method: "POST", body: file, headers: { "X-Facedeid-Request": JSON.stringify(opts) } });
  const d = await r.json();
  if (!r.ok) { $("recover-status").textContent = d.detail || "recovery failed"; return; }
  $("recover-result").src = d.image;
  const a = $("recover-download"); a.href = d.image; a.download = "recovered." + d.ext; a.hidden = false;
  $("recover-status").textContent = "Done. A wrong password gives a different face, not an error.";
}

function choose(files) {
  state.files = [...files].filter((f) => f.size > 0);
  if (state.files.length) loadFile(state.files[0]);
}

async function init() {
  const r = await fetch("/api/methods"); const d = await r.json();
  state.methods = d.methods;
  d.methods.forEach((m) => { const o = document.createElement("option"); o.value = m.name; o.textContent = m.name; $("method").appendChild(o); });
  d.detectors.forEach((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; $("detector").appendChild(o); });
  $("detector").value = d.default_detector;
  $("method").value = d.methods.some((m) => m.name === "pixelate") ? "pixelate" : d.methods[0].name;
  $("limits").textContent = `Up to ${Math.round(d.limits.max_upload_bytes / 1048576)} MB and ${Math.round(d.limits.max_pixels / 1e6)} megapixels per photo. Photos are processed in memory and not kept.`;
  renderParams();
  const reversible = d.methods.filter((m) => m.kind === "pseudonymization");
  $("recover-info").textContent = reversible.length
    ? `Reversible methods: ${reversible.map((m) => m.name).join(", ")}.`
    : "No reversible (pseudonymizing) method is installed in this version, so there is nothing to recover yet.";
  $("recover-run").addEventListener("click", recover);
  $("method").addEventListener("change", renderParams);
  $("files").addEventListener("change", (e) => choose(e.target.files));
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", () => state.controller && state.controller.abort());
  $("original").addEventListener("click", (e) => {
    const c = $("original"); const rect = c.getBoundingClientRect();
    const x = (e.clientX - rect.left) * (c.width / rect.width), y = (e.clientY - rect.top) * (c.height / rect.height);
    state.faces.forEach((f, i) => {
      const [x0, y0, x1, y1] = f.box;
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) { state.skip.has(i) ? state.skip.delete(i) : state.skip.add(i); }
    });
    drawOriginal();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((x) => x.classList.toggle("active", x === t));
    document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== t.dataset.tab; });
  }));
}
init();
