// chartlight SMART app: live analysis status, review actions, evidence panel, transcript player,
// dictation recorder. Plain JS, no build step. Every POST carries the CSRF token from <meta>.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

async function post(url, body, isForm) {
  const headers = { "X-CSRF-Token": csrfToken() };
  if (!isForm) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin", headers,
    body: isForm ? body : JSON.stringify(body || {}),
  });
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {}; }
  if (!response.ok || answer.ok === false) {
    throw new Error(answer.error || ("HTTP " + response.status));
  }
  return answer;
}

// ---- home: analysis status, updated live ------------------------------------------------------

function initInputs() {
  const root = document.getElementById("inputs");
  if (!root) return;
  const statusUrl = root.dataset.statusUrl;
  const analyzeUrl = statusUrl.replace(/status\.json$/, "analyze");
  let polling = false;

  const active = () => root.querySelector('tr[data-state="queued"], tr[data-state="running"]');

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      while (true) {
        const response = await fetch(statusUrl, { credentials: "same-origin" });
        if (!response.ok) break;
        const data = await response.json();
        let finished = false;
        for (const [key, status] of Object.entries(data.inputs)) {
          const row = root.querySelector(`tr[data-input="${CSS.escape(key)}"]`);
          if (!row) continue;
          const before = row.dataset.state;
          row.dataset.state = status.state;
          const bar = row.querySelector("progress");
          bar.value = status.progress;
          bar.hidden = !(status.state === "queued" || status.state === "running");
          const label = row.querySelector(".state");
          label.textContent = status.state;
          label.className = "state state-" + status.state.replace(/ /g, "-");
          row.querySelector(".status-text").textContent = status.text;
          if ((before === "queued" || before === "running") &&
              (status.state === "done" || status.state === "failed")) finished = true;
        }
        if (finished && !active()) { window.location.reload(); return; }
        if (!active()) break;
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
    } finally {
      polling = false;
    }
  }

  root.closest("main").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-analyze]");
    if (!button) return;
    button.disabled = true;
    const body = { source: button.dataset.analyze };
    if (button.dataset.pipeline) body.pipeline = button.dataset.pipeline;
    try {
      const answer = await post(analyzeUrl, body);
      for (const key of answer.started) {
        const row = root.querySelector(`tr[data-input="${CSS.escape(key)}"]`);
        if (row) { row.dataset.state = "queued"; row.querySelector("progress").hidden = false; }
      }
      poll();
    } catch (error) {
      alert("The analysis could not start: " + error.message);
      button.disabled = false;
    }
  });
  if (active()) poll();
}

// ---- review: evidence beside each value, approve / edit / reject --------------------------------

function initEvidence() {
  const panel = document.querySelector("aside.evidence");
  if (!panel) return;
  const select = (row) => {
    document.querySelectorAll("tr.value-row.selected").forEach((r) => r.classList.remove("selected"));
    row.classList.add("selected");
    panel.querySelector('[data-role="crop"]').src = row.dataset.cropUrl;
    panel.querySelector('[data-role="page"]').src = row.dataset.pageUrl;
    panel.querySelector('[data-role="quote"]').textContent = row.dataset.quote;
    panel.querySelector('[data-role="page-number"]').textContent = row.dataset.page;
  };
  document.querySelectorAll("tr.value-row").forEach((row) => {
    row.addEventListener("click", (event) => { if (!event.target.closest(".review-actions")) select(row); });
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") select(row); });
  });
}

function initReviewActions() {
  document.querySelectorAll(".review-actions").forEach((box) => {
    const message = box.querySelector(".action-message");
    const editForm = box.querySelector(".edit-form");
    const rejectForm = box.querySelector(".reject-form");
    const buttons = () => box.querySelectorAll("button[data-decision]");

    async function decide(decision, body) {
      buttons().forEach((b) => { b.disabled = true; });
      message.textContent = "saving…";
      try {
        const answer = await post(box.dataset[decision + "Url"], body);
        const state = box.querySelector(".state");
        state.textContent = answer.state;
        state.className = "state state-" + answer.state.replace(/ /g, "-");
        message.textContent = "saved in the record (version " + answer.version + ")";
        if (editForm) editForm.hidden = true;
        if (rejectForm) rejectForm.hidden = true;
        box.querySelectorAll('button[data-decision="approve"], button[data-decision="reject"]')
          .forEach((b) => b.remove());
        const row = box.closest("tr, article");
        const value = row && row.querySelector('[data-testid="value"]');
        if (value && decision === "edit" && answer.value) {
          value.textContent = answer.value;
          const flag = row.querySelector("td.flag");
          if (flag) flag.textContent = "";  // the model's flag described the model's value
        }
        if (answer.ai_original) {
          let original = box.querySelector(".ai-original");
          if (!original) {
            original = document.createElement("span");
            original.className = "ai-original";
            original.dataset.testid = "ai-original";
            state.after(original);
          }
          original.textContent = "AI read: " + answer.ai_original;
        }
        if (decision === "reject") buttons().forEach((b) => b.remove());
      } catch (error) {
        message.textContent = "not saved: " + error.message;
      } finally {
        buttons().forEach((b) => { b.disabled = false; });
      }
    }

    box.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      if (button.dataset.cancel !== undefined) {
        button.closest("form").hidden = true;
      } else if (button.dataset.decision === "approve") {
        decide("approve", {});
      } else if (button.dataset.decision === "edit") {
        editForm.hidden = false;
        editForm.querySelector("[name=value]").focus();
      } else if (button.dataset.decision === "reject") {
        rejectForm.hidden = false;
        rejectForm.querySelector("[name=reason]").focus();
      }
    });
    if (editForm) editForm.addEventListener("submit", (event) => {
      event.preventDefault();
      decide("edit", { value: editForm.elements.value.value, comment: editForm.elements.comment.value });
    });
    if (rejectForm) rejectForm.addEventListener("submit", (event) => {
      event.preventDefault();
      decide("reject", { reason: rejectForm.elements.reason.value });
    });
  });
}

// ---- transcript: the words follow the audio -----------------------------------------------------

function initTranscript() {
  const audio = document.querySelector('audio[data-testid="audio"]');
  const words = Array.from(document.querySelectorAll(".words .word"));
  if (!audio || !words.length) return;
  const times = words.map((w) => [parseFloat(w.dataset.start), parseFloat(w.dataset.end)]);
  let current = null;
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    let index = -1;
    for (let i = 0; i < times.length; i++) {
      if (times[i][0] <= t + 0.05) index = i; else break;
    }
    const word = index >= 0 ? words[index] : null;
    if (word === current) return;
    if (current) current.classList.remove("speaking");
    if (word) word.classList.add("speaking");
    current = word;
  });
  words.forEach((word, i) => word.addEventListener("click", () => {
    audio.currentTime = times[i][0];
    audio.play();
  }));
}

// ---- structured note: a sentence plays the words it came from --------------------------------

function initNoteSentences() {
  const audio = document.querySelector('audio[data-testid="audio"]');
  const sentences = Array.from(document.querySelectorAll(".note-sentence"));
  if (!audio || !sentences.length) return;
  let stopAt = null;
  audio.addEventListener("timeupdate", () => {
    if (stopAt !== null && audio.currentTime >= stopAt) {
      audio.pause();
      stopAt = null;
    }
  });
  const play = (sentence) => {
    audio.currentTime = parseFloat(sentence.dataset.start);
    stopAt = parseFloat(sentence.dataset.end);
    audio.play();
  };
  sentences.forEach((sentence) => {
    sentence.addEventListener("click", () => play(sentence));
    sentence.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); play(sentence); }
    });
  });
}

// ---- imaging: localisation boxes over the image -------------------------------------------------

function initImageBoxes() {
  // A finding that compared nothing has no prior image: its figure goes away.
  document.querySelectorAll("img[data-optional]").forEach((img) => {
    const hide = () => { img.closest("figure").hidden = true; };
    if (img.complete && !img.naturalWidth) hide(); else img.addEventListener("error", hide);
  });
  document.querySelectorAll(".image-frame[data-boxes]").forEach((frame) => {
    const img = frame.querySelector("img");
    const draw = () => {
      frame.querySelectorAll(".box").forEach((b) => b.remove());
      const size = (img.dataset.frameSize || "").split("x").map(Number);
      const width = size[0] || img.naturalWidth, height = size[1] || img.naturalHeight;
      if (!width || !height) return;
      for (const part of frame.dataset.boxes.split(";")) {
        const b = part.split(",").map(Number);
        if (b.length !== 4 || b.some(isNaN)) continue;
        const box = document.createElement("div");
        box.className = "box";
        box.style.left = (100 * b[0] / width) + "%";
        box.style.top = (100 * b[1] / height) + "%";
        box.style.width = (100 * (b[2] - b[0]) / width) + "%";
        box.style.height = (100 * (b[3] - b[1]) / height) + "%";
        frame.appendChild(box);
      }
    };
    if (img.complete) draw(); else img.addEventListener("load", draw);
  });
}

// ---- pathology: the patches' places on the slide overview ---------------------------------------

function initSlideOverview() {
  const aside = document.querySelector(".slide-overview[data-marks-url]");
  if (!aside) return;
  const frame = aside.querySelector(".overview-frame");
  const message = aside.querySelector('[data-role="overview-message"]');
  const patches = document.querySelectorAll(".patch[data-patch]");
  const highlight = (number) => {
    patches.forEach((p) => p.classList.toggle("active", p.dataset.patch === number));
    frame.querySelectorAll(".mark").forEach((m) => m.classList.toggle("active", m.dataset.patch === number));
  };
  patches.forEach((p) => {
    p.addEventListener("click", () => highlight(p.dataset.patch));
    p.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") highlight(p.dataset.patch); });
  });
  fetch(aside.dataset.marksUrl, { credentials: "same-origin" }).then(async (response) => {
    const body = await response.json();
    if (!body.ok) throw new Error(body.error || "the slide overview could not be made");
    for (const mark of body.marks) {
      const [x0, y0, x1, y1] = mark.box;
      const box = document.createElement("div");
      box.className = "mark";
      box.dataset.patch = String(mark.number);
      box.dataset.testid = "overview-mark";
      box.style.left = (100 * x0 / body.width) + "%";
      box.style.top = (100 * y0 / body.height) + "%";
      box.style.width = Math.max(0.4, 100 * (x1 - x0) / body.width) + "%";
      box.style.height = Math.max(0.4, 100 * (y1 - y0) / body.height) + "%";
      const label = document.createElement("span");
      label.textContent = String(mark.number);
      box.appendChild(label);
      box.addEventListener("click", () => highlight(box.dataset.patch));
      frame.appendChild(box);
    }
    if (body.unplaced.length) {
      message.textContent = "Not on this slide's pyramid, so not marked: patch " + body.unplaced.join(", ");
      message.hidden = false;
    }
  }).catch((error) => { message.textContent = String(error.message || error); message.hidden = false; });
}

// ---- dictation: record, upload, follow the transcription ---------------------------------------

function initDictation() {
  const root = document.querySelector("section.dictation");
  if (!root) return;
  const record = root.querySelector('[data-role="record"]');
  const stop = root.querySelector('[data-role="stop"]');
  const message = root.querySelector('[data-role="message"]');
  const timer = root.querySelector('[data-role="timer"]');
  const bar = root.querySelector("progress");
  const live = root.dataset.liveUrl && window.AudioWorkletNode && window.crypto && crypto.randomUUID;
  let recorder = null, chunks = [], started = 0, ticking = null, stopLive = null;

  record.addEventListener("click", async () => {
    if (live) {
      try {
        stopLive = await startLive(root, message);
      } catch (error) {
        message.textContent = "The microphone is not available: " + error.message;
        return;
      }
    } else {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const type = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg"].find(
          (t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
        recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      } catch (error) {
        message.textContent = "The microphone is not available: " + error.message;
        return;
      }
      chunks = [];
      recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
      recorder.addEventListener("stop", upload);
      recorder.start(250);
    }
    started = Date.now();
    ticking = setInterval(() => { timer.textContent = Math.round((Date.now() - started) / 1000) + " s"; }, 250);
    record.disabled = true;
    stop.disabled = false;
    message.textContent = live ? "recording… (the transcript follows as you speak)" : "recording…";
  });

  stop.addEventListener("click", async () => {
    stop.disabled = true;
    clearInterval(ticking);
    if (!live) {
      recorder.stop();
      recorder.stream.getTracks().forEach((track) => track.stop());
      return;
    }
    message.textContent = "finishing the transcript…";
    let answer;
    try {
      answer = await stopLive();
    } catch (error) {
      message.textContent = "The recording could not be stored: " + error.message;
      record.disabled = false;
      return;
    }
    follow(answer, "final transcript above; ");
  });

  async function upload() {
    const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    if (blob.size > Number(root.dataset.maxBytes)) {
      message.textContent = "The recording is too long to upload.";
      record.disabled = false;
      return;
    }
    const form = new FormData();
    form.append("audio", blob, "dictation.webm");
    message.textContent = "uploading " + Math.round(blob.size / 1024) + " KiB…";
    let answer;
    try {
      answer = await post(root.dataset.uploadUrl, form, true);
    } catch (error) {
      message.textContent = "The upload failed: " + error.message;
      record.disabled = false;
      return;
    }
    follow(answer, "");
  }

  // The stored recording's transcription job, then its review page (sign-off happens there).
  async function follow(answer, prefix) {
    message.textContent = prefix + (answer.written ? "stored in the record; transcribing for review…"
                                                   : "kept in this session only; transcribing for review…");
    bar.hidden = false;
    const key = "speech:" + answer.source;
    while (true) {
      await new Promise((resolve) => setTimeout(resolve, 700));
      const response = await fetch(root.dataset.statusUrl, { credentials: "same-origin" });
      if (!response.ok) continue;
      const status = (await response.json()).inputs[key];
      if (!status) continue;
      bar.value = status.progress;
      if (status.state === "failed") {
        message.textContent = "The transcription failed: " + status.text;
        record.disabled = false;
        return;
      }
      if (status.state === "done") {
        window.location.href = root.dataset.reviewUrl.replace("SOURCE_ID", answer.source.split("/")[1]);
        return;
      }
      message.textContent = prefix + status.state + ": " + status.text;
    }
  }
}

// ---- live dictation: 16 kHz PCM streamed in pieces, the transcript so far shown as it comes ----

const LIVE_MIN_SAMPLES = 4000;  // 250 ms: send at most four pieces a second while speaking
const LIVE_MAX_SAMPLES = 64000;  // 4 s: a piece after a stall stays well under the body limit

// Starts capturing and streaming; resolves to a function that stops and resolves to the stop's
// answer (final transcript, stored recording). Each piece's delay, from its audio reaching the
// page to the transcript that includes it being shown, is a Performance API measure named
// "chartlight-live-delay".
async function startLive(root, message) {
  const panel = root.querySelector('[data-role="live"]');
  const partial = root.querySelector('[data-role="partial"]');
  const url = root.dataset.liveUrl.replace("RECORDING_ID", crypto.randomUUID());
  const stream = await navigator.mediaDevices.getUserMedia({ audio: {
    channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const context = new AudioContext({ sampleRate: 16000 });  // the browser resamples the microphone
  await context.audioWorklet.addModule(root.dataset.workletUrl);
  const node = new AudioWorkletNode(context, "pcm-capture");
  const silent = context.createGain();
  silent.gain.value = 0;  // pulled by the graph, never heard
  context.createMediaStreamSource(stream).connect(node);
  node.connect(silent).connect(context.destination);
  panel.hidden = false;
  partial.textContent = "";

  const pending = [];  // {pcm: Int16Array, at: performance.now() when it reached the page}
  let seq = 0, sending = null, ended = false, failure = null, flushed = null;
  const ready = () => pending.reduce((n, block) => n + block.pcm.length, 0) >= LIVE_MIN_SAMPLES;

  const show = (answer) => {
    partial.textContent = answer.text;
    root.querySelector('[data-role="live-test"]').hidden = !answer.test_weights;
  };

  async function send() {
    while (pending.length && (ended || ready())) {
      const blocks = [];
      let count = 0;
      while (pending.length && count + pending[0].pcm.length <= LIVE_MAX_SAMPLES) {
        count += pending[0].pcm.length;
        blocks.push(pending.shift());
      }
      const body = new Int16Array(count);
      let offset = 0;
      for (const block of blocks) { body.set(block.pcm, offset); offset += block.pcm.length; }
      const answer = await postPiece(url + "?seq=" + seq, body.buffer);
      seq += 1;
      show(answer);
      await new Promise((resolve) => requestAnimationFrame(resolve));
      const shown = performance.now();
      for (const block of blocks) performance.measure("chartlight-live-delay", { start: block.at, end: shown });
    }
  }

  const pump = () => {
    if (sending || failure) return;
    sending = send().catch((error) => {
      failure = error;
      message.textContent = "Live transcription stopped: " + error.message;
    }).finally(() => { sending = null; if (!failure && pending.length && (ended || ready())) pump(); });
  };

  flushed = new Promise((resolve) => {
    node.port.onmessage = (event) => {
      const samples = event.data.samples;
      const pcm = new Int16Array(samples.length);
      for (let i = 0; i < samples.length; i++) {
        const x = Math.max(-1, Math.min(1, samples[i]));
        pcm[i] = x < 0 ? Math.round(x * 32768) : Math.round(x * 32767);
      }
      if (pcm.length) pending.push({ pcm, at: performance.now() });
      if (event.data.last) resolve();
      pump();
    };
  });

  return async () => {
    node.port.postMessage("flush");
    await flushed;
    stream.getTracks().forEach((track) => track.stop());
    await context.close();
    ended = true;
    pump();
    while (sending) await sending;
    if (failure) throw failure;
    const answer = await postPiece(url + "?stop=1", new ArrayBuffer(0));
    show(answer);
    partial.dataset.final = "true";
    return answer;
  };
}

// A piece (or the stop) of a live recording, sent again on a network failure: the server counts
// a piece by its sequence number and does a stop once, so a repeat is harmless.
async function postPiece(url, body) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await post(url, body, true);
    } catch (error) {
      if (!(error instanceof TypeError) || attempt === 3) throw error;  // TypeError: no answer
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  initInputs();
  initEvidence();
  initReviewActions();
  initTranscript();
  initNoteSentences();
  initImageBoxes();
  initSlideOverview();
  initDictation();
});

// ---- ask the chart: the answer streams in (NDJSON), then comes back checked, with citations ----

function initAsk() {
  const root = document.getElementById("ask");
  const form = document.getElementById("ask-form");
  if (!root || !form) return;
  const stream = root.querySelector('[data-testid="ask-stream"]');
  const answerBox = root.querySelector('[data-testid="ask-answer"]');
  const status = root.querySelector('[data-testid="ask-status"]');
  const save = document.getElementById("ask-save");
  let answerId = null;

  function showAnswer(answer) {
    answerBox.textContent = "";
    answerId = answer.sentences.length ? answer.id : null;
    if (answer.test_output) {
      const marker = document.createElement("div");
      marker.className = "test-marker";
      marker.textContent = "TEST OUTPUT, not clinical (random test weights)";
      answerBox.appendChild(marker);
    }
    const list = document.createElement("ul");
    for (const sentence of answer.sentences) {
      const item = document.createElement("li");
      item.dataset.testid = "answer-sentence";
      item.textContent = sentence.text + " ";
      for (const citation of sentence.citations) {
        const link = document.createElement("a");
        link.href = citation.url;
        link.className = "citation";
        link.dataset.testid = "answer-citation";
        link.textContent = citation.reference;
        item.appendChild(link);
        item.appendChild(document.createTextNode(" "));
      }
      list.appendChild(item);
    }
    answerBox.appendChild(list);
    const notes = [];
    if (answer.unreadable) notes.push("The model's answer could not be read: " + answer.unreadable);
    if (answer.withheld.length) notes.push(answer.withheld.length + " sentence(s) withheld: " + answer.withheld.join("; "));
    if (!answer.sentences.length) notes.push("No sentence of the answer is supported by the chart.");
    status.textContent = notes.join(" ");
    if (save) save.hidden = !answerId;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    stream.textContent = "";
    answerBox.textContent = "";
    status.textContent = "Asking…";
    if (save) save.hidden = true;
    const response = await fetch(root.dataset.askUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Content-Type": "application/json" },
      body: JSON.stringify({ question: form.question.value }),
    });
    if (!response.ok) {
      let error = "HTTP " + response.status;
      try { error = (await response.json()).error || error; } catch (e) { /* not JSON */ }
      status.textContent = error;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (!line.trim()) continue;
        const message = JSON.parse(line);
        if (message.chunk !== undefined) stream.textContent += message.chunk;
        if (message.answer) showAnswer(message.answer);
        if (message.error) status.textContent = message.error;
      }
    }
  });

  if (save) {
    save.addEventListener("click", async () => {
      save.disabled = true;
      try {
        const saved = await post(root.dataset.saveUrl, { answer: answerId });
        status.textContent = "Saved as " + saved.document + " (Provenance " + saved.provenance + ").";
        status.dataset.document = saved.document;
        save.hidden = true;
      } catch (error) {
        status.textContent = error.message;
      } finally {
        save.disabled = false;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", initAsk);
