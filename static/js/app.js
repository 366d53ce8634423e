/* AudioSeal Studio dashboard behaviour. Plain JavaScript, no build step; htmx and Chart.js are vendored.
 *
 * The pages are server-rendered and work without this file; it adds: the mobile menu, auto-submitting
 * selects, copy buttons, charts, live job progress (polling the REST API with the session cookie), and the
 * New job upload (client-side checks with the API's own messages, then a POST to the API with progress).
 */
(function () {
  "use strict";

  const ZERO_ID = "00000000-0000-0000-0000-000000000000"; // the placeholder id in page URLs from the server
  const STATUS_LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", canceled: "Canceled" };
  const ACTIVE = new Set(["queued", "running"]);
  const POLL_DETAIL_MS = 1000;
  const POLL_LIST_MS = 2000;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /** True the first time it is called for (element, purpose): pages re-run init after partial swaps. */
  function once(el, purpose) {
    const key = "bound" + purpose;
    if (el.dataset[key]) return false;
    el.dataset[key] = "1";
    return true;
  }

  function readJson(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  async function api(url, options) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      ...options,
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { ok: response.ok, status: response.status, body };
  }

  function errorOf(result) {
    const error = result.body && result.body.error;
    if (error) return error;
    return { code: "HTTP_" + result.status, message: "The server answered " + result.status + "." };
  }

  /* --- shell: menu, auto-submit, copy -------------------------------------------------------------- */

  function initShell() {
    const toggle = document.querySelector("[data-nav-toggle]");
    const close = () => { document.body.classList.remove("nav-open"); if (toggle) toggle.setAttribute("aria-expanded", "false"); };
    if (toggle) {
      toggle.addEventListener("click", () => {
        const open = document.body.classList.toggle("nav-open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    document.querySelectorAll("[data-nav-close]").forEach((el) => el.addEventListener("click", close));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  }

  function initAutosubmit(root) {
    root.querySelectorAll("form[data-autosubmit] select").forEach((select) => {
      if (!once(select, "Submit")) return;
      select.addEventListener("change", () => select.form.requestSubmit ? select.form.requestSubmit() : select.form.submit());
    });
  }

  function initCopy(root) {
    root.querySelectorAll("[data-copy]").forEach((button) => {
      if (!once(button, "Copy")) return;
      button.addEventListener("click", async () => {
        const input = document.querySelector(button.dataset.copy);
        const label = button.querySelector("[data-copy-label]") || button;
        let copied = false;
        try {
          // An input's value, or the text of a code block (the quick-start snippets).
          await navigator.clipboard.writeText(input.value !== undefined ? input.value : input.textContent);
          copied = true;
        } catch (e) {
          if (input.select) input.select();
          else window.getSelection().selectAllChildren(input);
          copied = document.execCommand && document.execCommand("copy");
        }
        label.textContent = copied ? "Copied" : "Press Ctrl+C";
        setTimeout(() => { label.textContent = "Copy"; }, 2000);
      });
    });
  }

  /* --- charts ---------------------------------------------------------------------------------------- */

  const PALETTE = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#dc2626", "#7c3aed", "#db2777", "#64748b", "#a3a3a3"];

  function baseOptions(extra) {
    return Object.assign({
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: false }, tooltip: { intersect: false, mode: "index" } },
    }, extra || {});
  }

  const CHARTS = {
    usage(canvas, data) {
      const used = data.used, reserved = data.reserved || 0;
      const hasLimit = data.included !== null && data.included !== undefined;
      const remaining = hasLimit ? Math.max(0, data.included - used - reserved) : 0;
      let labels = ["Used", "In progress", "Remaining"], values = [used, reserved, remaining];
      if (!hasLimit && used + reserved === 0) { labels = ["No usage yet"]; values = [1]; }
      else if (!hasLimit) { labels = labels.slice(0, 2); values = values.slice(0, 2); }
      const colors = labels.length === 1 ? ["#e5e7eb"] : ["#4f46e5", "#a5b4fc", "#e5e7eb"];
      const share = hasLimit && data.included > 0 ? Math.min(100, (100 * (used + reserved)) / data.included) : null;
      const center = {
        id: "centerText",
        afterDraw(chart) {
          if (share === null) return;
          const { ctx, chartArea: a } = chart;
          const x = (a.left + a.right) / 2, y = (a.top + a.bottom) / 2;
          ctx.save();
          ctx.textAlign = "center";
          ctx.fillStyle = "#111827";
          ctx.font = "600 22px " + Chart.defaults.font.family;
          ctx.fillText((share < 10 ? share.toFixed(1) : Math.round(share)) + "%", x, y + 4);
          ctx.fillStyle = "#6b7280";
          ctx.font = "12px " + Chart.defaults.font.family;
          ctx.fillText("of plan used", x, y + 22);
          ctx.restore();
        },
      };
      return new Chart(canvas, {
        type: "doughnut",
        plugins: [center],
        data: { labels, datasets: [{ data: values, backgroundColor: colors, borderWidth: 0 }] },
        options: baseOptions({
          cutout: "70%",
          plugins: {
            legend: { display: true, position: "right", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
            tooltip: { enabled: labels.length > 1, callbacks: { label: (ctx) => " " + ctx.label + ": " + Number(ctx.raw).toFixed(1) + " min" } },
          },
        }),
      });
    },
    history(canvas, data) {
      return new Chart(canvas, {
        type: "bar",
        data: { labels: data.labels, datasets: [{ label: "Minutes used", data: data.used, backgroundColor: "#818cf8", borderRadius: 6 }] },
        options: baseOptions({ scales: { y: { beginAtZero: true, title: { display: true, text: "minutes" } } } }),
      });
    },
    /** Usage page: billed minutes per day, one stacked bar series per job kind or API key
     * (jobs.dashboard.console.usage_chart lays out every day, zeros included). */
    daily(canvas, data) {
      return new Chart(canvas, {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: data.datasets.map((set, i) => ({
            label: set.label, data: set.values, backgroundColor: PALETTE[i % PALETTE.length], borderWidth: 0,
          })),
        },
        options: baseOptions({
          scales: {
            x: { stacked: true, ticks: { maxTicksLimit: 10, maxRotation: 0 } },
            y: { stacked: true, beginAtZero: true, title: { display: true, text: "minutes" } },
          },
          plugins: {
            legend: { display: data.datasets.length > 0, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
            tooltip: { intersect: false, mode: "index", callbacks: { label: (ctx) => " " + ctx.dataset.label + ": " + Number(ctx.raw).toFixed(2) + " min" } },
          },
        }),
      });
    },
    localization(canvas, result) {
      const loc = result.localization || { hop_seconds: 0.01, values: [] };
      const points = loc.values.map((v, i) => ({ x: +(i * loc.hop_seconds).toFixed(3), y: v }));
      const segments = result.segments || [];
      // The watermarked regions (the table above the chart lists them): shaded bands under the curve.
      const regions = {
        id: "regions",
        beforeDatasetsDraw(chart) {
          const { ctx, chartArea: a, scales: { x } } = chart;
          ctx.save();
          segments.forEach((seg, i) => {
            const left = Math.max(a.left, x.getPixelForValue(seg.start_seconds));
            const right = Math.min(a.right, x.getPixelForValue(seg.end_seconds));
            if (right <= left) return;
            ctx.fillStyle = "rgba(5,150,105,.14)";
            ctx.fillRect(left, a.top, right - left, a.bottom - a.top);
            ctx.fillStyle = "#047857";
            ctx.font = "600 11px " + Chart.defaults.font.family;
            ctx.fillText(String(i + 1), left + 4, a.top + 12);
          });
          ctx.restore();
        },
      };
      return new Chart(canvas, {
        type: "line",
        plugins: [regions],
        data: {
          datasets: [
            { label: "Watermark probability", data: points, borderColor: "#4f46e5", backgroundColor: "rgba(79,70,229,.15)",
              fill: "origin", pointRadius: 0, borderWidth: 1.5, tension: 0.15 },
            { label: "Threshold", data: points.length ? [{ x: points[0].x, y: 0.5 }, { x: points[points.length - 1].x, y: 0.5 }] : [],
              borderColor: "#9ca3af", borderDash: [4, 4], pointRadius: 0, borderWidth: 1 },
          ],
        },
        options: baseOptions({
          parsing: false,
          scales: {
            x: { type: "linear", min: 0, max: points.length ? points[points.length - 1].x : 1,
              title: { display: true, text: "seconds" }, ticks: { maxTicksLimit: 10 } },
            y: { min: 0, max: 1, title: { display: true, text: "probability" } },
          },
          plugins: { legend: { display: false }, tooltip: { intersect: false, mode: "nearest", axis: "x",
            callbacks: { title: (items) => items[0].parsed.x.toFixed(2) + " s" } } },
        }),
      });
    },
    // The robustness report: per attack, detection probability and bit accuracy, coloured by the outcome.
    robustness(canvas, result) {
      const rows = result.attacks || [];
      const outcome = (r) => (r.message_survived ? "#059669" : r.detected ? "#d97706" : "#dc2626");
      return new Chart(canvas, {
        type: "bar",
        data: {
          labels: rows.map((r) => r.name),
          datasets: [
            { label: "Detection probability", data: rows.map((r) => r.probability), backgroundColor: rows.map(outcome), borderRadius: 4 },
            { label: "Bit accuracy", data: rows.map((r) => (r.bit_accuracy === null ? 0 : r.bit_accuracy)), backgroundColor: "#c7d2fe", borderRadius: 4 },
          ],
        },
        options: baseOptions({
          indexAxis: "y",
          scales: { x: { min: 0, max: 1, ticks: { callback: (v) => Math.round(v * 100) + "%" } }, y: { ticks: { autoSkip: false, font: { size: 11 } } } },
          plugins: {
            legend: { display: true, position: "bottom", labels: { boxWidth: 10, boxHeight: 10 } },
            tooltip: { callbacks: { label: (ctx) => " " + ctx.dataset.label + ": " + Math.round(ctx.raw * 100) + "%" } },
          },
        }),
      });
    },
    emotion(canvas, result) {
      const entries = Object.entries(result.scores || {}).sort((a, b) => b[1] - a[1]);
      return new Chart(canvas, {
        type: "bar",
        data: {
          labels: entries.map((e) => e[0]),
          datasets: [{ label: "Score", data: entries.map((e) => e[1]), borderRadius: 6,
            backgroundColor: entries.map((e, i) => (i === 0 ? "#4f46e5" : "#c7d2fe")) }],
        },
        options: baseOptions({ indexAxis: "y", scales: { x: { min: 0, max: 1 } } }),
      });
    },
    /** Emotion over time, already reduced by the server (jobs.dashboard.views.emotion_timeline): a few
     * named emotions and "other emotions", as stacked areas that add up to 1. */
    "emotion-frames"(canvas, timeline) {
      const colors = ["#4f46e5", "#0891b2", "#d97706", "#cbd5e1"];
      const last = timeline.seconds[timeline.seconds.length - 1] || 1;
      return new Chart(canvas, {
        type: "line",
        data: {
          datasets: timeline.datasets.map((set, j) => {
            const color = set.label === "other emotions" ? colors[3] : colors[j % 3];
            return {
              label: set.label, data: set.values.map((v, i) => ({ x: timeline.seconds[i], y: v })),
              borderColor: color, backgroundColor: color + (set.label === "other emotions" ? "" : "cc"),
              fill: j === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1, tension: 0.3, stack: "emotions",
            };
          }),
        },
        options: baseOptions({
          parsing: false,
          scales: {
            x: { type: "linear", min: 0, max: last, title: { display: true, text: "seconds" }, ticks: { maxTicksLimit: 8 } },
            y: { stacked: true, min: 0, max: 1, ticks: { callback: (v) => Math.round(v * 100) + " %" } },
          },
          plugins: {
            legend: { display: true, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
            tooltip: { intersect: false, mode: "index", callbacks: {
              title: (items) => items[0].parsed.x.toFixed(1) + " s",
              label: (ctx) => " " + ctx.dataset.label + ": " + Math.round(ctx.raw.y * 100) + " %",
            } },
          },
        }),
      });
    },
  };

  function initCharts(root) {
    if (typeof Chart === "undefined") return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#6b7280";
    root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      if (Chart.getChart(canvas)) return;
      const build = CHARTS[canvas.dataset.chart];
      const data = readJson(canvas.dataset.source);
      if (build && data) build(canvas, data);
    });
  }

  /* --- live progress --------------------------------------------------------------------------------- */

  function paintProgress(container, job) {
    const badge = container.querySelector("[data-job-status]");
    if (badge) { badge.className = "badge " + job.status; badge.textContent = STATUS_LABELS[job.status] || job.status; }
    const bar = container.querySelector(".progress");
    if (bar) {
      bar.className = bar.className.replace(/\b(queued|running|succeeded|failed|canceled)\b/g, "").trim() + " " + job.status;
      bar.setAttribute("aria-valuenow", String(job.progress));
      bar.firstElementChild.style.width = job.progress + "%";
    }
    const pct = container.querySelector("[data-job-pct]");
    if (pct) pct.textContent = job.progress + "%";
    const message = container.querySelector("[data-job-message]");
    if (message) message.textContent = job.progress_message || "";
    container.dataset.status = job.status;
  }

  /** Job detail: poll the job until it is final, then refresh the result sections in place. */
  function initJobDetail() {
    const live = document.querySelector("[data-job-live]");
    if (!live) return;
    let timer = null;
    async function tick() {
      timer = null;
      if (document.hidden) { schedule(); return; }
      const result = await api(live.dataset.api);
      if (result.ok) {
        paintProgress(live, result.body);
        if (!ACTIVE.has(result.body.status)) { await refreshSections(); return; }
      }
      schedule();
    }
    function schedule() { if (!timer) timer = setTimeout(tick, POLL_DETAIL_MS); }
    live._poll = () => { if (timer) clearTimeout(timer); timer = null; tick(); };
    if (ACTIVE.has(live.dataset.status)) schedule();
  }

  async function refreshSections() {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "HX-Request": "false" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    ["job-actions", "job-body"].forEach((id) => {
      const fresh = doc.getElementById(id), current = document.getElementById(id);
      if (fresh && current) current.replaceWith(fresh);
    });
    initPage(document);
  }

  function initCancel(root) {
    root.querySelectorAll("[data-cancel]").forEach((button) => {
      if (!once(button, "Cancel")) return;
      button.addEventListener("click", async () => {
        button.disabled = true;
        const result = await api(button.dataset.cancel, { method: "POST" });
        const live = document.querySelector("[data-job-live]");
        if (!result.ok) {
          const error = errorOf(result);
          alertBox(button.closest(".page-head"), error.message + " (" + error.code + ")");
          button.disabled = false;
        } else if (live) {
          paintProgress(live, result.body);
          await refreshSections();
        }
      });
    });
  }

  function alertBox(after, text) {
    const box = document.createElement("div");
    box.className = "alert alert-error";
    box.setAttribute("role", "alert");
    box.textContent = text;
    after.insertAdjacentElement("afterend", box);
  }

  /** Jobs tables: refresh the rows of queued and running jobs from the API (two list calls per tick). */
  function initLiveLists(root) {
    root.querySelectorAll("[data-live-jobs]").forEach((list) => {
      if (!once(list, "Live")) return;
      async function tick() {
        if (!document.body.contains(list)) return; // swapped out by an htmx filter change
        const rows = Array.from(list.querySelectorAll("tr[data-job-id]")).filter((r) => ACTIVE.has(r.dataset.status));
        if (rows.length && !document.hidden) {
          const seen = new Map();
          for (const status of ACTIVE) {
            const result = await api(list.dataset.api + "?page_size=100&status=" + status);
            if (result.ok) result.body.results.forEach((job) => seen.set(job.id, job));
          }
          for (const row of rows) {
            let job = seen.get(row.dataset.jobId);
            if (!job) { // no longer active: read its final state once
              const result = await api(list.dataset.api + "/" + row.dataset.jobId);
              job = result.ok ? result.body : null;
            }
            if (job) { paintProgress(row, job); row.dataset.status = job.status; }
          }
        }
        setTimeout(tick, POLL_LIST_MS);
      }
      setTimeout(tick, POLL_LIST_MS);
    });
  }

  /** Jobs lists (the Jobs page's first page, the overview's recent jobs): a job created elsewhere (the API,
   * another tab) appears without a reload. One cheap API call per tick asks for the newest job matching the
   * list's filters; when the list does not show it, the list's region is re-rendered from the server (the
   * same template, so no row markup is duplicated here) and swapped in. */
  function initNewJobs(root) {
    const regions = root.matches && root.matches("[data-new-jobs]") ? [root] : Array.from(root.querySelectorAll("[data-new-jobs]"));
    regions.forEach((region) => {
      if (!once(region, "NewJobs")) return;
      async function tick() {
        if (!document.body.contains(region)) return; // replaced (by this or an htmx filter change)
        if (!document.hidden) {
          const result = await api(region.dataset.newJobs);
          const newest = result.ok && result.body.results && result.body.results[0];
          if (newest && !region.querySelector('tr[data-job-id="' + newest.id + '"]')) {
            if (await replaceRegion(region)) return;
          }
        }
        setTimeout(tick, POLL_LIST_MS);
      }
      setTimeout(tick, POLL_LIST_MS);
    });
  }

  async function replaceRegion(region) {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok || !document.body.contains(region)) return false;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById(region.id);
    if (!fresh) return false;
    const adopted = document.importNode(fresh, true);
    region.replaceWith(adopted);
    if (window.htmx) window.htmx.process(adopted);
    initPage(adopted);
    return true;
  }

  /* --- new job --------------------------------------------------------------------------------------- */

  function initJobForm() {
    const form = document.querySelector("[data-job-form]");
    if (!form) return;
    const config = readJson(form.dataset.jobForm);
    const panels = Array.from(form.querySelectorAll("[data-kind-panel]"));
    const currentKind = () => (form.querySelector('input[name="kind"]:checked') || {}).value;
    const currentPanel = () => panels.find((p) => p.dataset.kindPanel === currentKind());

    function showKind() {
      panels.forEach((p) => { p.hidden = p.dataset.kindPanel !== currentKind(); });
      const url = new URL(window.location.href);
      url.searchParams.set("kind", currentKind());
      history.replaceState(null, "", url);
    }
    form.querySelectorAll('input[name="kind"]').forEach((r) => r.addEventListener("change", showKind));

    function fileSpec(input) {
      return config.kinds[currentKind()].files.find((f) => f.name === input.dataset.fileField);
    }

    /** The API's checks, in the API's words (jobs.services.check_upload_size / probe_upload, media_ops). With
     * several files (a batch) each is checked and the message names the file. */
    function checkFile(input) {
      if (!input.files.length) {  // e.g. a report's original may be left out
        return "optional" in input.dataset ? null : { code: "VALIDATION_ERROR", message: "Choose a file to upload." };
      }
      if (input.files.length > 1 && input.files.length > config.maxBatchItems) {
        return { code: "BATCH_TOO_LARGE", message: "A batch holds at most " + config.maxBatchItems + " items; you chose " + input.files.length + "." };
      }
      for (const file of input.files) {
        const error = checkOne(input, file);
        if (error) {
          if (input.files.length > 1) error.message = file.name + ": " + error.message;
          return error;
        }
      }
      return null;
    }

    function checkOne(input, file) {
      const name = input.dataset.fileField;
      if (file.size === 0) return { code: "EMPTY_FILE", message: "`" + name + "` is empty." };
      if (file.size > config.maxBytes) {
        return { code: "FILE_TOO_LARGE", message: "`" + name + "` is " + formatBytes(file.size) + "; the limit is " + formatBytes(config.maxBytes) + "." };
      }
      const spec = fileSpec(input);
      const lower = file.name.toLowerCase();
      if (spec && !spec.extensions.some((ext) => lower.endsWith(ext))) return { code: "INVALID_FORMAT", message: spec.typeMessage };
      return null;
    }

    function describeChoice(input) {
      const files = Array.from(input.files);
      if (!files.length) return input.multiple ? "Drop files here or browse" : "Drop a file here or browse";
      if (files.length === 1) return files[0].name + " · " + formatBytes(files[0].size);
      return files.length + " files · " + formatBytes(files.reduce((sum, f) => sum + f.size, 0)) + " · one batch";
    }

    function markFileInvalid(input) {
      input.closest("[data-dropzone]").classList.add("invalid");
      input.setAttribute("aria-invalid", "true");
    }

    function showFileError(input, error) {
      const zone = input.closest("[data-dropzone]");
      const slot = zone.parentElement.querySelector("[data-file-error]");
      slot.textContent = error ? error.message : "";
      if (error) slot.dataset.code = error.code; else delete slot.dataset.code;
      zone.classList.toggle("invalid", !!error);
      input.setAttribute("aria-invalid", error ? "true" : "false");
    }

    form.querySelectorAll("[data-dropzone]").forEach((zone) => {
      const input = zone.querySelector('input[type="file"]');
      const chosen = zone.querySelector("[data-chosen]");
      input.addEventListener("change", () => {
        chosen.textContent = describeChoice(input);
        showFileError(input, input.files.length ? checkFile(input) : null);
      });
      ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragover"); }));
      ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragover")));
      zone.addEventListener("drop", (e) => {
        e.preventDefault();
        if (!e.dataTransfer.files.length) return;
        input.files = e.dataTransfer.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      });
    });

    const message = form.querySelector("#opt-message");
    function checkMessage() {
      const slot = form.querySelector("[data-message-error]");
      const value = message.value.trim();
      const bad = value !== "" && !/^[0-9a-fA-F]{4}$/.test(value);
      slot.textContent = bad ? "message must be exactly 4 hexadecimal digits (16 bits), e.g. 1A2B" : "";
      message.setAttribute("aria-invalid", bad ? "true" : "false");
      return !bad;
    }
    if (message) message.addEventListener("input", checkMessage);

    const status = form.querySelector("[data-upload-status]");
    const bar = form.querySelector("[data-upload-bar]");
    const pct = form.querySelector("[data-upload-pct]");
    const label = form.querySelector("[data-upload-label]");
    const errorBox = form.querySelector("[data-form-error]");
    const submit = form.querySelector("[data-submit]");

    /** The server's refusal, once, in the summary box, which takes the focus (a screen reader reads it; the
     * page scrolls to it). A refusal about one file also marks that file's drop zone, without repeating. */
    function showError(error) {
      errorBox.hidden = !error;
      if (!error) return;
      errorBox.querySelector("[data-error-code]").textContent = error.code;
      errorBox.querySelector("[data-error-message]").textContent = error.message;
      errorBox.focus();
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      showError(null);
      const panel = currentPanel();
      const data = new FormData();
      let firstBad = null;
      const fileInputs = panel.querySelectorAll('input[type="file"]');
      const urlInput = panel.querySelector("[data-file-url]");
      showUrlError(urlInput, null);
      if (urlInput && urlInput.value.trim() !== "") {
        // Input by URL: the server fetches it (https only, checked there); no file may be chosen as well.
        const url = urlInput.value.trim();
        const error = fileInputs[0].files.length ? { code: "VALIDATION_ERROR", message: "Choose a file or give a URL, not both." }
          : (!/^https:\/\//i.test(url) ? { code: "URL_NOT_ALLOWED", message: "`file_url` must be an https:// URL." } : null);
        if (error) { showUrlError(urlInput, error); urlInput.focus(); return; }
        showFileError(fileInputs[0], null);
        data.append("file_url", url);
        appendOptions(panel, data);
        upload(config.kinds[currentKind()].endpoint, data, (body) => config.jobUrl.replace(ZERO_ID, body.id), "Job created — opening it…");
        return;
      }
      // Several files on a single-input kind: one batch (POST /api/v1/batches), each file an item.
      const batch = fileInputs.length === 1 && fileInputs[0].files.length > 1;
      fileInputs.forEach((input) => {
        const error = checkFile(input);
        showFileError(input, error);
        if (error && !firstBad) firstBad = { input, error };
        if (!error && input.files.length) Array.from(batch ? input.files : [input.files[0]]).forEach((file) => data.append(input.name, file));
      });
      if (message && panel.contains(message) && !checkMessage() && !firstBad) firstBad = { input: message };
      if (firstBad) { firstBad.input.focus(); return; }
      appendOptions(panel, data);
      if (batch) {
        data.append("kind", currentKind());
        upload(config.batchEndpoint, data, (body) => config.batchUrl.replace(ZERO_ID, body.id), "Batch created — opening it…");
      } else {
        upload(config.kinds[currentKind()].endpoint, data, (body) => config.jobUrl.replace(ZERO_ID, body.id), "Job created — opening it…");
      }
    });

    function appendOptions(panel, data) {
      panel.querySelectorAll("select, input[type=text], input[type=checkbox]").forEach((input) => {
        if (input.type === "checkbox") data.append(input.name, input.checked ? "true" : "false");
        else if (input.value.trim() !== "") data.append(input.name, input.value.trim());
      });
    }

    function showUrlError(input, error) {
      if (!input) return;
      const slot = input.parentElement.querySelector("[data-url-error]");
      slot.textContent = error ? error.message : "";
      if (error) slot.dataset.code = error.code; else delete slot.dataset.code;
      input.setAttribute("aria-invalid", error ? "true" : "false");
    }

    function upload(endpoint, data, pageFor, doneLabel) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", endpoint);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      status.hidden = false;
      submit.disabled = true;
      label.textContent = "Uploading…";
      const paint = (value) => {
        bar.firstElementChild.style.width = value + "%";
        bar.setAttribute("aria-valuenow", String(value));
        pct.textContent = value + "%";
      };
      paint(0);
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) paint(Math.round((e.loaded / e.total) * 100)); });
      xhr.upload.addEventListener("load", () => { paint(100); label.textContent = "Checking the file…"; });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (xhr.status === 202 && body) {
          label.textContent = doneLabel;
          window.location.assign(pageFor(body));
          return;
        }
        status.hidden = true;
        submit.disabled = false;
        const error = errorOf({ body, status: xhr.status });
        showError(error);
        const field = error.details && error.details.field;
        if (field === "file_url") { showUrlError(currentPanel().querySelector("[data-file-url]"), error); return; }
        const input = field && currentPanel().querySelector('input[data-file-field="' + field + '"]');
        if (input) markFileInvalid(input);
      });
      xhr.addEventListener("error", () => {
        status.hidden = true;
        submit.disabled = false;
        showError({ code: "NETWORK_ERROR", message: "The upload was interrupted. Check your connection and try again." });
      });
      xhr.send(data);
    }
  }

  /** Sizes as core/units.py writes them (the API's messages and the page agree): powers of 1024, one
   * decimal unless it is zero. 26214400 -> "25 MB", 28800044 -> "27.5 MB". */
  function formatBytes(n) {
    if (n < 1024) return n + (n === 1 ? " byte" : " bytes");
    const units = ["KB", "MB", "GB", "TB"];
    let size = n / 1024, i = 0;
    while (size >= 1024 && i < units.length - 1) { size /= 1024; i += 1; }
    const text = size.toFixed(1);
    return (text.endsWith(".0") ? text.slice(0, -2) : text) + " " + units[i];
  }

  /** "Run detection on the output": fetch the watermarked file and submit it to the detect endpoint. */
  function initVerify(root) {
    root.querySelectorAll("[data-verify-output]").forEach((button) => {
      if (!once(button, "Verify")) return;
      button.addEventListener("click", async () => {
        button.disabled = true;
        button.textContent = "Submitting…";
        const file = await fetch(button.dataset.verifyOutput, { credentials: "same-origin" });
        const data = new FormData();
        data.append("file", await file.blob(), button.dataset.filename || "output");
        if (button.dataset.verifyOriginal) {  // a robustness report: the input it was made from, for the quality
          const original = await fetch(button.dataset.verifyOriginal, { credentials: "same-origin" });
          data.append("original", await original.blob(), button.dataset.originalFilename || "original");
        }
        if (button.dataset.verifyMessage) data.append("message", button.dataset.verifyMessage);
        const result = await api(button.dataset.detectEndpoint, { method: "POST", body: data });
        if (result.status === 202) {
          window.location.assign(window.location.pathname.replace(/[0-9a-f-]{36}\/?$/, result.body.id + "/"));
        } else {
          const error = errorOf(result);
          button.textContent = "Detection not started: " + error.message;
        }
      });
    });
  }

  /** Batch page: refresh the counts from the API until every item is final (the rows refresh themselves,
   * like the jobs list). */
  function initBatchLive() {
    const live = document.querySelector("[data-batch-live]");
    if (!live || live.dataset.status === "completed") return;
    function paint(batch) {
      live.querySelectorAll("[data-batch-count]").forEach((el) => {
        const value = batch.counts[el.dataset.batchCount];
        if (value !== undefined) el.textContent = String(value);
      });
      const badge = live.querySelector("[data-batch-status]");
      const done = batch.status === "completed";
      badge.className = "badge " + (done ? "succeeded" : "running");
      badge.textContent = done ? "Completed" : "Processing";
      live.dataset.status = batch.status;
    }
    async function tick() {
      if (!document.hidden) {
        const result = await api(live.dataset.api);
        if (result.ok) {
          paint(result.body);
          if (result.body.status === "completed") return;
        }
      }
      setTimeout(tick, POLL_LIST_MS);
    }
    setTimeout(tick, POLL_DETAIL_MS);
  }

  /** Progress bars are rendered with aria-valuenow only (no style="" attributes: the Content-Security-Policy
   * refuses them); their width is set here, through the CSSOM, which the policy allows. */
  function initProgressBars(root) {
    root.querySelectorAll(".progress[aria-valuenow] > span").forEach((span) => {
      span.style.width = Number(span.parentElement.getAttribute("aria-valuenow") || 0) + "%";
    });
  }

  function initPage(root) {
    initProgressBars(root);
    initAutosubmit(root);
    initCopy(root);
    initCharts(root);
    initCancel(root);
    initVerify(root);
    initLiveLists(root);
    initNewJobs(root);
  }

  document.addEventListener("DOMContentLoaded", () => {
    initShell();
    initPage(document);
    initJobDetail();
    initJobForm();
    initBatchLive();
    document.body.addEventListener("htmx:afterSettle", (e) => initPage(e.target));
  });
})();
