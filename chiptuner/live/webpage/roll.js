// The scrolling piano roll: the player's melody and the four voices, one colour each, the newest
// at the right edge. It runs in a Worker on an OffscreenCanvas, so the page's main thread draws
// nothing per frame: while a page animates, a browser holds the tasks that follow a key press
// (the WebSocket answer among them) until its next frame, which would add up to a frame of
// latency to every note. Where there is no OffscreenCanvas, app.js loads this file as a page
// script and the roll draws on the main thread.
//
// Messages (times are absolute milliseconds, performance.timeOrigin + performance.now()):
//   {type: "init", canvas, width, height}    {type: "resize", width, height}
//   {type: "events", items: [{kind: "on"|"off"|"end", voice, pitch, at} | {kind: "beat", step, at, bpm}]}
"use strict";

function chiptunerRoll(canvas) {
  const COLOURS = {
    melody: "#f4f4f4", pulse1: "#ff5a6e", pulse2: "#ffb13b", triangle: "#4fb8ff", noise: "#8ee35f",
  };
  const ROLL_MS = 8000;
  const PITCH_LOW = 28;
  const PITCH_HIGH = 100;
  const DRUM_ROWS = [49, 46, 42, 38, 36]; // crash on top, kick at the bottom
  const DRUM_DRAW_MS = 70;
  const draw = canvas.getContext("2d");
  const origin = performance.timeOrigin;
  let notes = [];
  const open = {}; // voice -> the note it sounds (melody: pitch -> note)
  const melody = new Map();
  let beat = null;

  function start(voice, pitch, at) {
    if (voice === "melody") {
      stop(voice, pitch, at);
      const note = { voice, pitch, start: at, end: null };
      notes.push(note);
      melody.set(pitch, note);
      return;
    }
    stop(voice, undefined, at);
    const note = { voice, pitch, start: at, end: voice === "noise" ? at + DRUM_DRAW_MS : null };
    notes.push(note);
    if (voice !== "noise") open[voice] = note;
  }

  function stop(voice, pitch, at) {
    if (voice === "melody") {
      const note = melody.get(pitch);
      if (note) {
        note.end = at;
        melody.delete(pitch);
      }
      return;
    }
    const note = open[voice];
    if (note && (pitch === undefined || note.pitch === pitch)) {
      note.end = at;
      open[voice] = null;
    }
  }

  function handle(message) {
    if (message.type === "resize") {
      canvas.width = Math.max(300, Math.floor(message.width));
      canvas.height = Math.max(200, Math.floor(message.height));
    } else if (message.type === "events") {
      for (const item of message.items) {
        const at = item.at - origin;
        if (item.kind === "on") start(item.voice, item.pitch, at);
        else if (item.kind === "off") stop(item.voice, item.pitch, at);
        else if (item.kind === "end") stop(item.voice, undefined, at);
        else if (item.kind === "beat") beat = { step: item.step, at, bpm: item.bpm };
      }
    }
  }

  function frame() {
    const now = performance.now();
    const width = canvas.width;
    const height = canvas.height;
    const drumHeight = Math.round(height * 0.14);
    const pitchHeight = height - drumHeight - 4;
    const rowHeight = pitchHeight / (PITCH_HIGH - PITCH_LOW + 1);
    const drumRow = drumHeight / DRUM_ROWS.length;
    const x = (t) => width - ((now - t) / ROLL_MS) * width;
    const pitchY = (p) => pitchHeight - (p - PITCH_LOW + 1) * rowHeight;
    draw.fillStyle = "#0c0b12";
    draw.fillRect(0, 0, width, height);
    draw.fillStyle = "#1b1926"; // a line under every C
    for (let p = PITCH_LOW; p <= PITCH_HIGH; p++) {
      if (p % 12 === 0) draw.fillRect(0, pitchY(p) + rowHeight - 1, width, 1);
    }
    draw.fillStyle = "#15131e";
    draw.fillRect(0, height - drumHeight, width, drumHeight);
    if (beat) {
      // Beat and bar lines on the engine's step grid.
      const stepMs = 60000 / beat.bpm / 4;
      const oldest = beat.step - Math.ceil((beat.at - (now - ROLL_MS)) / stepMs);
      for (let step = Math.max(0, oldest - (((oldest % 4) + 4) % 4)); ; step += 4) {
        const t = beat.at + (step - beat.step) * stepMs;
        if (t > now) break;
        draw.fillStyle = step % 16 === 0 ? "#34304a" : "#1f1c2b";
        draw.fillRect(Math.round(x(t)), 0, 1, height);
      }
    }
    const kept = [];
    for (const note of notes) {
      const end = note.end ?? now;
      if (end < now - ROLL_MS) continue;
      kept.push(note);
      const x0 = x(note.start);
      const x1 = Math.max(x(Math.min(end, now)), x0 + 2);
      draw.fillStyle = COLOURS[note.voice];
      if (note.voice === "noise") {
        const row = Math.max(0, DRUM_ROWS.indexOf(note.pitch));
        draw.fillRect(x0, height - drumHeight + row * drumRow + 1, x1 - x0, drumRow - 2);
      } else if (note.voice === "melody") {
        draw.strokeStyle = COLOURS.melody;
        draw.lineWidth = 2;
        draw.strokeRect(x0, pitchY(note.pitch) - 2, x1 - x0, rowHeight + 4);
      } else {
        draw.fillRect(x0, pitchY(note.pitch), x1 - x0, Math.max(2, rowHeight - 1));
      }
    }
    notes = kept;
    draw.fillStyle = "rgba(255, 255, 255, 0.35)";
    draw.fillRect(width - 2, 0, 2, height);
    nextFrame(frame);
  }

  const nextFrame =
    typeof requestAnimationFrame === "function" ? (f) => requestAnimationFrame(f) : (f) => setTimeout(f, 16);
  nextFrame(frame);
  return { handle };
}

if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) {
  let roll = null;
  self.onmessage = (event) => {
    const message = event.data;
    if (message.type === "init") {
      roll = chiptunerRoll(message.canvas);
      roll.handle({ type: "resize", width: message.width, height: message.height });
    } else if (roll) {
      roll.handle(message);
    }
  };
}
