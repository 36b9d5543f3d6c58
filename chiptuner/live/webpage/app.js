// chiptuner in the browser: keys (computer keyboard or WebMIDI) go to the engine over a WebSocket,
// the four voices come back and play on a WebAudio chip synth, and a piano roll scrolls by.
// The protocol is described in chiptuner/live/web/protocol.py. Everything is local: no requests leave the page's origin.
"use strict";

(() => {
  const VOICES = ["pulse1", "pulse2", "triangle", "noise"];
  const ACCOMPANIMENT = VOICES.slice(1); // the voices a player turns on and off (pulse1 is theirs)
  // Piano on the computer keyboard, by physical key (event.code), so every layout plays alike.
  const WHITE_CODES = ["KeyA", "KeyS", "KeyD", "KeyF", "KeyG", "KeyH", "KeyJ", "KeyK", "KeyL", "Semicolon", "Quote"];
  const WHITE_STEPS = [0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17];
  const BLACK_CODES = { KeyW: 1, KeyE: 3, KeyT: 6, KeyY: 8, KeyU: 10, KeyO: 13, KeyP: 15 };
  const BUTTON_CODES = {
    KeyA: 0, KeyS: 1, KeyD: 2, KeyF: 3, KeyG: 4, Digit1: 0, Digit2: 1, Digit3: 2, Digit4: 3, Digit5: 4,
  };
  const MIDI_LANES = { 0: 0, 2: 1, 4: 2, 5: 3, 7: 4 }; // a MIDI keyboard's C D E F G are the five lanes
  const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
  // Peak levels of each voice at full volume, from the NES mixer (linearised) times the synth's
  // output gain of 2, halved for a bipolar wave: pulses, triangle, noise.
  const VOICE_PEAK = { pulse1: 0.11, pulse2: 0.11, triangle: 0.13, noise: 0.075 };
  const MASTER_GAIN = 1.8;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ state the tests read

  const stats = {
    connected: false,
    hello: null,
    settings: null,
    recording: null,
    notes: { melody: 0, pulse1: 0, pulse2: 0, triangle: 0, noise: 0, click: 0 },
    // Note-ons heard per voice and pitch class (C = 0): what the scale lock is checked by.
    pitchClasses: { pulse1: new Array(12).fill(0), pulse2: new Array(12).fill(0), triangle: new Array(12).fill(0) },
    latenciesMs: [],
    errors: [],
    pongs: 0,
    batches: 0,
    midiInputs: 0,
    maxLevel: 0,
    level: () => (synth ? synth.level() : 0),
    audioState: () => audioContext.state,
    latencyPercentileMs: (q) => percentile(stats.latenciesMs, q),
    send: (message) => send(message),
  };
  window.chiptunerStats = stats;

  function percentile(values, q) {
    if (!values.length) return NaN;
    const sorted = [...values].sort((a, b) => a - b);
    const index = Math.min(sorted.length - 1, Math.max(0, Math.round((q / 100) * (sorted.length - 1))));
    return sorted[index];
  }

  // ------------------------------------------------------------------ the chip synth

  const audioContext = new AudioContext({ latencyHint: "interactive" });
  let synth = null;

  function velocityVolume(velocity) {
    // The synth's 4-bit level of a MIDI velocity (chiptuner/_kernels/synth.py velocity_volume).
    return velocity <= 0 ? 0 : Math.min(15, Math.max(1, Math.floor((velocity * 15 + 63) / 127)));
  }

  // A pulse of duty d as its Fourier series: band-limited by construction (WebAudio also drops
  // the harmonics above Nyquist for each pitch it plays).
  function pulseWave(context, duty, harmonics) {
    const real = new Float32Array(harmonics + 1);
    const imag = new Float32Array(harmonics + 1);
    for (let n = 1; n <= harmonics; n++) {
      real[n] = Math.sin(2 * Math.PI * n * duty) / (Math.PI * n);
      imag[n] = (1 - Math.cos(2 * Math.PI * n * duty)) / (Math.PI * n);
    }
    return context.createPeriodicWave(real, imag);
  }

  // A periodic staircase of equal steps (the NES triangle's 32) as its exact Fourier series.
  function stepWave(context, levels, harmonics) {
    const real = new Float32Array(harmonics + 1);
    const imag = new Float32Array(harmonics + 1);
    const count = levels.length;
    for (let n = 1; n <= harmonics; n++) {
      let re = 0;
      let im = 0;
      for (let k = 0; k < count; k++) {
        const a = (2 * Math.PI * n * k) / count;
        const b = (2 * Math.PI * n * (k + 1)) / count;
        re += levels[k] * (Math.sin(b) - Math.sin(a));
        im += levels[k] * (Math.cos(a) - Math.cos(b));
      }
      real[n] = re / (Math.PI * n);
      imag[n] = im / (Math.PI * n);
    }
    return context.createPeriodicWave(real, imag);
  }

  function nesTriangleLevels() {
    const levels = [];
    for (let k = 15; k >= 0; k--) levels.push((k - 7.5) / 7.5);
    for (let k = 0; k <= 15; k++) levels.push((k - 7.5) / 7.5);
    return levels;
  }

  // One drum hit: the NES noise LFSR (15 bits, long or short mode) clocked at rateHz, its output
  // averaged over each sample (a box filter against aliasing), times a decay to -60 dB.
  function drumBuffer(context, rateHz, shortMode, decaySec, gain) {
    const rate = context.sampleRate;
    const length = Math.max(1, Math.ceil(decaySec * rate));
    const buffer = context.createBuffer(1, length, rate);
    const data = buffer.getChannelData(0);
    const clocksPerSample = rateHz / rate;
    const tap = shortMode ? 6 : 1;
    const attack = 0.001 * rate;
    let lfsr = 1;
    let phase = 0; // elapsed part of the current clock period
    for (let i = 0; i < length; i++) {
      let t = 0;
      let sum = 0;
      for (;;) {
        const value = lfsr & 1 ? -1 : 1;
        const untilClock = (1 - phase) / clocksPerSample;
        if (t + untilClock >= 1) {
          sum += value * (1 - t);
          phase += clocksPerSample * (1 - t);
          break;
        }
        sum += value * untilClock;
        t += untilClock;
        phase = 0;
        const feedback = (lfsr & 1) ^ ((lfsr >> tap) & 1);
        lfsr = (lfsr >> 1) | (feedback << 14);
      }
      const envelope = Math.pow(10, (-3 * i) / rate / decaySec) * Math.min(1, i / attack);
      data[i] = sum * envelope * gain;
    }
    return buffer;
  }

  class ChipSynth {
    constructor(context, hello) {
      this.context = context;
      this.master = context.createGain();
      this.master.gain.value = MASTER_GAIN;
      this.analyser = context.createAnalyser();
      this.analyser.fftSize = 2048;
      this.samples = new Float32Array(this.analyser.fftSize);
      this.master.connect(this.analyser);
      this.analyser.connect(context.destination);
      this.bus = {};
      for (const voice of [...VOICES, "click"]) {
        this.bus[voice] = context.createGain();
        this.bus[voice].connect(this.master);
      }
      this.velocity = hello.velocity;
      this.duty = { pulse1: 0.5, pulse2: 0.25 };
      this.pulses = new Map(hello.duty_cycles.map((d) => [d, pulseWave(context, d, 400)]));
      this.triangle = stepWave(context, nesTriangleLevels(), 512);
      this.drums = new Map();
      for (const [key, [rateHz, shortMode, decaySec, gain]] of Object.entries(hello.drums)) {
        this.drums.set(Number(key), drumBuffer(context, rateHz, shortMode > 0, decaySec, gain));
      }
      this.sounding = {};
    }

    level() {
      this.analyser.getFloatTimeDomainData(this.samples);
      let sum = 0;
      for (const x of this.samples) sum += x * x;
      return Math.sqrt(sum / this.samples.length);
    }

    noteOn(voice, pitch, when) {
      const context = this.context;
      const volume = velocityVolume(this.velocity[voice] ?? 100) / 15;
      this.release(voice, when);
      let source;
      if (voice === "noise") {
        source = context.createBufferSource();
        source.buffer = this.drums.get(pitch) ?? this.drums.get(38);
      } else {
        source = context.createOscillator();
        const wave = voice === "triangle" ? this.triangle : this.pulses.get(this.duty[voice]);
        source.setPeriodicWave(wave ?? this.pulses.get(0.5));
        source.frequency.setValueAtTime(440 * Math.pow(2, (pitch - 69) / 12), when);
      }
      const envelope = context.createGain();
      envelope.gain.setValueAtTime(0, when);
      envelope.gain.linearRampToValueAtTime(VOICE_PEAK[voice] * volume, when + 0.002);
      source.connect(envelope);
      envelope.connect(this.bus[voice]);
      source.onended = () => envelope.disconnect();
      source.start(when);
      this.sounding[voice] = { source, envelope, pitch, start: when };
    }

    // Drums are one-shots (a note-off leaves the hit to decay); a new hit cuts the last one.
    noteOff(voice, pitch, when) {
      const note = this.sounding[voice];
      if (note && voice !== "noise" && (pitch === undefined || note.pitch === pitch)) this.release(voice, when);
    }

    release(voice, when) {
      const note = this.sounding[voice];
      if (!note) return;
      const at = Math.max(when, note.start + 0.002);
      note.envelope.gain.setTargetAtTime(0, at, 0.003);
      note.source.stop(at + 0.03);
      this.sounding[voice] = null;
    }

    click(accent, when) {
      const osc = this.context.createOscillator();
      osc.frequency.value = accent ? 1760 : 1320;
      const envelope = this.context.createGain();
      envelope.gain.setValueAtTime(0.12, when);
      envelope.gain.exponentialRampToValueAtTime(0.001, when + 0.03);
      osc.connect(envelope);
      envelope.connect(this.bus.click);
      osc.onended = () => envelope.disconnect();
      osc.start(when);
      osc.stop(when + 0.04);
    }
  }

  function startAudio() {
    if (audioContext.state !== "running") audioContext.resume();
  }
  function showAudioState() {
    const running = audioContext.state === "running";
    $("audio-state").textContent = running ? "sound on" : "sound off: press a key or click";
    $("audio-state").className = "status " + (running ? "ok" : "bad");
  }
  audioContext.onstatechange = showAudioState;
  showAudioState();
  startAudio();

  // ------------------------------------------------------------------ piano roll

  // Drawn by roll.js, in a Worker where the browser has OffscreenCanvas (see roll.js for why).
  const canvas = $("roll");
  let rollPost = () => {};
  const rollQueue = [];
  const absoluteNow = () => performance.timeOrigin + performance.now();

  function rollAdd(item) {
    rollQueue.push(item);
  }
  function rollFlush() {
    if (rollQueue.length) rollPost({ type: "events", items: rollQueue.splice(0) });
  }

  function canvasSize() {
    const ratio = window.devicePixelRatio || 1;
    return { width: canvas.clientWidth * ratio, height: canvas.clientHeight * ratio };
  }

  function startRoll() {
    if (typeof canvas.transferControlToOffscreen === "function" && typeof Worker === "function") {
      const offscreen = canvas.transferControlToOffscreen();
      const worker = new Worker("roll.js");
      worker.postMessage({ type: "init", canvas: offscreen, ...canvasSize() }, [offscreen]);
      rollPost = (message) => worker.postMessage(message);
    } else {
      const script = document.createElement("script");
      script.src = "roll.js";
      script.onload = () => {
        const roll = window.chiptunerRoll(canvas);
        roll.handle({ type: "resize", ...canvasSize() });
        rollPost = (message) => roll.handle(message);
      };
      document.head.appendChild(script);
    }
    new ResizeObserver(() => rollPost({ type: "resize", ...canvasSize() })).observe(canvas);
    stats.rollInWorker = typeof canvas.transferControlToOffscreen === "function";
  }

  // The level meter and the latency readout run on timers, not on animation frames.
  setInterval(() => {
    if (synth) stats.maxLevel = Math.max(stats.maxLevel, synth.level());
  }, 50);
  setInterval(showLatency, 1000);

  function showLatency() {
    const recent = stats.latenciesMs.slice(-100);
    if (!recent.length) return;
    $("latency").textContent =
      `key \u2192 sound: ${percentile(recent, 50).toFixed(1)} ms median, ` +
      `${percentile(recent, 90).toFixed(1)} ms p90 (${recent.length} notes)`;
  }

  // ------------------------------------------------------------------ the connection

  let socket = null;
  let nextKeyId = 1;
  const pendingKeys = new Map(); // key-event id -> when the key went down (performance.now() time)

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws`);
    socket.onopen = () => {
      stats.connected = true;
      $("status").textContent = "connected";
      $("status").className = "status ok";
    };
    socket.onmessage = (event) => receive(JSON.parse(event.data));
    socket.onclose = () => {
      stats.connected = false;
      $("status").textContent = "not connected (is `python -m chiptuner.live --web` running?), retrying";
      $("status").className = "status bad";
      releaseAll();
      setTimeout(connect, 1000);
    };
  }

  function receive(message) {
    switch (message.type) {
      case "notes":
        playEvents(message.events);
        break;
      case "hello":
        stats.hello = message;
        if (!synth) synth = new ChipSynth(audioContext, message);
        showChoices("style", message.styles);
        showChoices("energy", message.energy_levels);
        showChoices("scale-tonic", message.scale_tonics);
        showChoices("scale-mode", ["off", ...message.scale_modes]);
        showSettings(message.settings);
        showRecording(message.recording);
        break;
      case "settings":
        showSettings(message.settings);
        break;
      case "record":
        showRecording(message.on);
        break;
      case "pong":
        stats.pongs += 1;
        break;
      case "error":
        stats.errors.push(message);
        $("status").textContent = `server: ${message.message}`;
        break;
      default:
        break;
    }
  }

  function playEvents(events) {
    stats.batches += 1;
    const when = audioContext.currentTime;
    const at = absoluteNow();
    let step = -1;
    for (const event of events) {
      const voice = event.voice;
      if (event.step !== undefined) step = event.step;
      if (event.duty !== undefined) {
        if (synth) synth.duty[voice] = event.duty;
      } else if (event.all_off) {
        if (synth && voice !== "click") synth.release(voice, when);
        rollAdd({ kind: "end", voice, at });
      } else if (voice === "click") {
        if (event.on) {
          stats.notes.click += 1;
          if (synth) synth.click(event.pitch !== 37, when);
        }
      } else if (event.on) {
        if (synth) synth.noteOn(voice, event.pitch, when);
        rollAdd({ kind: "on", voice, pitch: event.pitch, at });
        stats.notes[voice] += 1;
        if (stats.pitchClasses[voice]) stats.pitchClasses[voice][event.pitch % 12] += 1;
        if (event.key_id !== undefined && pendingKeys.has(event.key_id)) {
          stats.latenciesMs.push(performance.now() - pendingKeys.get(event.key_id));
          pendingKeys.delete(event.key_id);
          if (stats.latenciesMs.length > 5000) stats.latenciesMs.splice(0, 1000);
        }
      } else {
        if (synth) synth.noteOff(voice, event.pitch, when);
        rollAdd({ kind: "off", voice, pitch: event.pitch, at });
      }
    }
    if (step >= 0 && stats.settings) rollAdd({ kind: "beat", step, at, bpm: stats.settings.bpm });
    rollFlush();
  }

  // ------------------------------------------------------------------ playing

  let mode = "keys";
  let octave = 4; // the A key plays C of this octave (C4 = MIDI 60)
  const heldKeys = new Map(); // event.code -> the pitch sent
  const heldMidi = new Map(); // MIDI note -> the pitch sent

  function eventTime(event) {
    const stamp = event && event.timeStamp;
    const now = performance.now();
    return typeof stamp === "number" && stamp > 0 && stamp <= now ? stamp : now;
  }

  function noteOn(pitch, downAt, velocity = 100) {
    startAudio();
    const id = nextKeyId++;
    pendingKeys.set(id, downAt);
    if (pendingKeys.size > 256) pendingKeys.delete(pendingKeys.keys().next().value);
    send({ type: "note", pitch, on: true, velocity, id });
    rollAdd({ kind: "on", voice: "melody", pitch, at: absoluteNow() });
    rollFlush();
    stats.notes.melody += 1;
  }

  function noteOff(pitch) {
    send({ type: "note", pitch, on: false });
    rollAdd({ kind: "off", voice: "melody", pitch, at: absoluteNow() });
    rollFlush();
  }

  function releaseAll() {
    for (const pitch of heldKeys.values()) noteOff(pitch);
    for (const pitch of heldMidi.values()) noteOff(pitch);
    heldKeys.clear();
    heldMidi.clear();
  }

  function lanePitch(lane) {
    const lanes = stats.hello ? stats.hello.lane_notes : [60, 62, 64, 65, 67];
    return lanes[lane];
  }

  function keyPitch(code) {
    if (mode === "buttons") return code in BUTTON_CODES ? lanePitch(BUTTON_CODES[code]) : null;
    const base = 12 * (octave + 1);
    const white = WHITE_CODES.indexOf(code);
    if (white >= 0) return base + WHITE_STEPS[white];
    if (code in BLACK_CODES) return base + BLACK_CODES[code];
    return null;
  }

  function isTyping(target) {
    return target instanceof HTMLInputElement && (target.type === "text" || target.type === "number");
  }

  function showOctave() {
    $("octave").textContent = `${NOTE_NAMES[0]}${octave}`;
  }

  window.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    startAudio();
    if (mode === "keys" && (event.code === "KeyZ" || event.code === "KeyX")) {
      event.preventDefault();
      if (!event.repeat) {
        octave = Math.min(8, Math.max(0, octave + (event.code === "KeyX" ? 1 : -1)));
        showOctave();
      }
      return;
    }
    const pitch = keyPitch(event.code);
    if (pitch === null || pitch < 0 || pitch > 127) return;
    event.preventDefault();
    if (event.repeat || heldKeys.has(event.code)) return; // auto-repeat never retriggers
    heldKeys.set(event.code, pitch);
    noteOn(pitch, eventTime(event));
  });

  window.addEventListener("keyup", (event) => {
    const pitch = heldKeys.get(event.code);
    if (pitch === undefined) return;
    event.preventDefault();
    heldKeys.delete(event.code);
    noteOff(pitch);
  });

  window.addEventListener("blur", releaseAll);
  window.addEventListener("pointerdown", startAudio);

  // ------------------------------------------------------------------ WebMIDI

  function onMidiMessage(event) {
    const data = event.data;
    if (!data || data.length < 3) return;
    const kind = data[0] & 0xf0;
    const note = data[1];
    if (kind === 0x90 && data[2] > 0) {
      let pitch = note;
      if (mode === "buttons") {
        const lane = MIDI_LANES[note % 12];
        if (lane === undefined) return;
        pitch = lanePitch(lane);
      }
      if (heldMidi.has(note)) noteOff(heldMidi.get(note));
      heldMidi.set(note, pitch);
      noteOn(pitch, eventTime(event), data[2]);
    } else if (kind === 0x80 || kind === 0x90) {
      const pitch = heldMidi.get(note);
      if (pitch === undefined) return;
      heldMidi.delete(note);
      noteOff(pitch);
    }
  }

  function startMidi() {
    if (typeof navigator.requestMIDIAccess !== "function") {
      $("midi-state").textContent = "WebMIDI is not available in this browser; use the computer keyboard";
      return;
    }
    navigator.requestMIDIAccess({ sysex: false }).then(
      (access) => {
        const attach = () => {
          const names = [];
          for (const input of access.inputs.values()) {
            input.onmidimessage = onMidiMessage;
            names.push(input.name || "MIDI input");
          }
          stats.midiInputs = names.length;
          $("midi-state").textContent = names.length ? `playing from ${names.join(", ")}` : "none connected";
        };
        attach();
        access.onstatechange = attach;
      },
      () => {
        $("midi-state").textContent = "MIDI access was refused; use the computer keyboard";
      },
    );
  }

  // ------------------------------------------------------------------ controls

  function showSettings(settings) {
    stats.settings = settings;
    $("bpm").value = settings.bpm;
    $("bpm-out").textContent = Math.round(settings.bpm);
    $("temperature").value = settings.temperature;
    $("temperature-out").textContent = Number(settings.temperature).toFixed(2);
    $("metronome").checked = settings.metronome;
    $("style").value = settings.style;
    $("energy").value = settings.energy;
    for (const voice of ACCOMPANIMENT) $(`voice-${voice}`).checked = settings.voices.includes(voice);
    // "off", or "TONIC:MODE" as the server names it.
    const [tonic, scaleMode] = settings.scale === "off" ? [null, "off"] : settings.scale.split(":");
    if (tonic !== null) $("scale-tonic").value = tonic;
    $("scale-mode").value = scaleMode;
    $("scale-tonic").disabled = scaleMode === "off";
    $("swing").value = settings.swing;
    $("swing-out").textContent = Number(settings.swing).toFixed(2);
    setMode(settings.mode);
  }

  // The options of a select: the model's styles, the energy levels (from the server's hello).
  function showChoices(id, names) {
    $(id).replaceChildren(
      ...names.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }),
    );
  }

  function setMode(next) {
    if (next === mode) return;
    releaseAll();
    mode = next;
    $("mode").value = mode;
    $("help-keys").hidden = mode !== "keys";
    $("help-buttons").hidden = mode !== "buttons";
  }

  function showRecording(on) {
    stats.recording = on;
    const button = $("record");
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? "\u25A0 Stop recording" : "\u25CF Record a new take";
  }

  function settingControl(id, name, value) {
    const control = $(id);
    control.addEventListener("change", () => {
      send({ type: "settings", [name]: value(control) });
      control.blur(); // the keys play again at once
    });
  }
  settingControl("bpm", "bpm", (c) => Number(c.value));
  settingControl("temperature", "temperature", (c) => Number(c.value));
  settingControl("metronome", "metronome", (c) => c.checked);
  settingControl("style", "style", (c) => c.value);
  settingControl("energy", "energy", (c) => c.value);
  // The scale lock: the tonic and the mode make one setting ("off" turns it off).
  const scaleSetting = () => {
    const scaleMode = $("scale-mode").value;
    return scaleMode === "off" ? "off" : `${$("scale-tonic").value}:${scaleMode}`;
  };
  settingControl("scale-tonic", "scale", scaleSetting);
  settingControl("scale-mode", "scale", scaleSetting);
  settingControl("swing", "swing", (c) => Number(c.value));
  $("swing").addEventListener("input", () => ($("swing-out").textContent = Number($("swing").value).toFixed(2)));
  // A voice turned off rests in the model (the band plays on without it), from the next step.
  for (const voice of ACCOMPANIMENT) {
    settingControl(`voice-${voice}`, "voices", () => ACCOMPANIMENT.filter((v) => $(`voice-${v}`).checked));
  }
  settingControl("mode", "mode", (c) => {
    setMode(c.value);
    return c.value;
  });
  $("bpm").addEventListener("input", () => ($("bpm-out").textContent = $("bpm").value));
  $("temperature").addEventListener("input", () => {
    $("temperature-out").textContent = Number($("temperature").value).toFixed(2);
  });
  $("record").addEventListener("click", () => {
    send({ type: "record", on: !stats.recording });
    $("record").blur();
  });

  showOctave();
  startRoll();
  connect();
  startMidi();
})();
