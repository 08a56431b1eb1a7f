// The explorer of every class's Grad-CAM map: one function that the static page, the Jekyll post and
// the JupyterLab widget all run on the same markup (explorer.html) and the same data (explore.py).
// It draws a class's overlay as viz.overlay does on viz.heatmap_on_photo's map: bilinear upsampling
// into the network's box with pixel centres aligned, 0 outside it, round(255 * value) half to even
// into the colour table, (1 - alpha) * photo + alpha * colour rounded half to even.
function mountExplorer(root, D, onSelect) {
  "use strict";
  const $ = (id) => root.querySelector("#gcx-" + id);
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const maps = bytes(D.maps), table = bytes(D.table);
  const [K, MH, MW] = D.mapShape, [W, H] = D.size, [X0, Y0, X1, Y1] = D.box;
  const order = D.probabilities.map((p, i) => i).sort((a, b) => D.probabilities[b] - D.probabilities[a]);
  const rankOf = new Int32Array(K);
  order.forEach((k, rank) => { rankOf[k] = rank; });
  const canvas = $("overlay");
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  let photo = null, current = -1, alpha = D.alpha;
  // round half to even, as NumPy's round and OpenCV's saturate_cast do
  const rint = (v) => { const r = Math.round(v); return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r; };
  // source coordinates of bilinear upsampling with pixel centres aligned (align_corners=False)
  function axis(outN, inN) {
    const lo = new Int32Array(outN), hi = new Int32Array(outN), t = new Float64Array(outN);
    const scale = inN / outN;
    for (let i = 0; i < outN; i++) {
      const s = Math.max((i + 0.5) * scale - 0.5, 0), f = Math.floor(s);
      lo[i] = f; hi[i] = Math.min(f + 1, inN - 1); t[i] = s - f;
    }
    return {lo, hi, t};
  }
  const ax = axis(X1 - X0, MW), ay = axis(Y1 - Y0, MH);
  const pct = (p) => (100 * p).toFixed(p >= 0.001 ? 1 : 3) + "%";
  function draw() {
    if (!photo || current < 0) return;
    const out = ctx.createImageData(W, H), o = out.data, m = current * MH * MW;
    for (let y = 0; y < H; y++) {
      const inY = y >= Y0 && y < Y1, r0 = inY ? m + ay.lo[y - Y0] * MW : 0, r1 = inY ? m + ay.hi[y - Y0] * MW : 0;
      const ty = inY ? ay.t[y - Y0] : 0;
      for (let x = 0; x < W; x++) {
        let v = 0;
        if (inY && x >= X0 && x < X1) {
          const x0 = ax.lo[x - X0], x1 = ax.hi[x - X0], tx = ax.t[x - X0];
          const top = maps[r0 + x0] + (maps[r0 + x1] - maps[r0 + x0]) * tx;
          const bottom = maps[r1 + x0] + (maps[r1 + x1] - maps[r1 + x0]) * tx;
          v = (top + (bottom - top) * ty) / 255;
        }
        const level = rint(255 * Math.min(Math.max(v, 0), 1)) * 3, p = 4 * (y * W + x);
        for (let c = 0; c < 3; c++) o[p + c] = rint((1 - alpha) * photo[p + c] + alpha * table[level + c]);
        o[p + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
    canvas.dataset.drawn = String(current);
  }
  if (X0 > 0 || Y0 > 0 || X1 < W || Y1 < H) {  // outline the network's crop, over the canvas, not in it
    const crop = $("crop");
    Object.assign(crop.style, {left: 100 * X0 / W + "%", top: 100 * Y0 / H + "%",
      width: 100 * (X1 - X0) / W + "%", height: 100 * (Y1 - Y0) / H + "%"});
    crop.hidden = false; $("cropNote").hidden = false;
  }
  const shareRows = D.regions.map((name) => {
    const tr = document.createElement("tr"), th = document.createElement("th"), bar = document.createElement("td");
    const value = document.createElement("td");
    th.textContent = name; bar.className = "bar"; bar.append(document.createElement("span"));
    tr.append(th, bar, value);
    $("shares").tBodies[0].append(tr);
    return {bar: bar.firstChild, value};
  });
  $("shares").hidden = D.regions.length === 0;
  const ranking = $("ranking"), items = new Array(K);
  order.forEach((k) => {
    const li = document.createElement("li"), name = document.createElement("span"), p = document.createElement("span");
    name.textContent = D.names[k]; p.textContent = pct(D.probabilities[k]);
    li.append(name, p); li.dataset.index = String(k); li.setAttribute("role", "option");
    li.addEventListener("click", () => select(k));
    ranking.append(li); items[k] = li;
  });
  const datalist = $("classNames");
  for (const name of [...D.names].sort()) {
    const o = document.createElement("option"); o.value = name; datalist.append(o);
  }
  function select(k, quiet = false) {  // quiet: the choice came from outside, not from the reader
    if (!(k >= 0 && k < K)) return;
    const changed = k !== current;
    if (items[current]) items[current].setAttribute("aria-selected", "false");
    current = k; items[k].setAttribute("aria-selected", "true");
    const li = items[k];  // scroll the list only, never the page around it
    if (li.offsetTop < ranking.scrollTop || li.offsetTop + li.offsetHeight > ranking.scrollTop + ranking.clientHeight) {
      ranking.scrollTop = li.offsetTop - ranking.clientHeight / 2;
    }
    const chosen = $("chosen");
    chosen.textContent = D.names[k] + " \u2014 " + pct(D.probabilities[k]) + " (rank " + (rankOf[k] + 1) + ")";
    chosen.dataset.index = String(k);
    shareRows.forEach((row, r) => {
      const share = D.shares[k][r];
      row.bar.style.width = (100 * share).toFixed(1) + "%"; row.value.textContent = (100 * share).toFixed(0) + "%";
    });
    draw();
    if (changed && onSelect && !quiet) onSelect(k);
  }
  $("search").addEventListener("input", (e) => {
    const want = e.target.value.trim().toLowerCase();
    const k = D.names.findIndex((n) => n.toLowerCase() === want);
    if (k >= 0) select(k);
  });
  const slider = $("alpha");
  slider.value = String(alpha); $("alphaValue").textContent = String(alpha);
  slider.addEventListener("input", () => {
    alpha = Number(slider.value); $("alphaValue").textContent = slider.value; draw();
  });
  ranking.addEventListener("keydown", (e) => {  // only while the list has focus: the page keeps its own arrows
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const rank = rankOf[current] + (e.key === "ArrowDown" ? 1 : -1);
    if (rank >= 0 && rank < K) select(order[rank]);
    e.preventDefault();
  });
  let wanted = order[0];
  const img = new Image();
  img.src = D.photo;
  img.decode().then(() => {
    const scratch = document.createElement("canvas");
    scratch.width = W; scratch.height = H;
    const sctx = scratch.getContext("2d", {willReadFrequently: true});
    sctx.drawImage(img, 0, 0);
    photo = sctx.getImageData(0, 0, W, H).data;
    select(wanted, true);
    root.dataset.ready = "true";
  });
  // select(k) from outside (onSelect is not called): before the photo is decoded it is kept for then
  return {select: (k) => { if (photo) select(k, true); else if (k >= 0 && k < K) wanted = k; }};
}
