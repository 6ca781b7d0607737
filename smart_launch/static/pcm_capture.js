// AudioWorklet of live dictation: the microphone's samples, downmixed to mono (the AudioContext
// runs at 16 kHz, so the browser has resampled them), posted to the page in 50 ms blocks. A
// "flush" message posts what is left and ends the stream.
"use strict";

const BLOCK = 800;  // samples: 50 ms at 16 kHz

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.done = false;
    this.port.onmessage = (event) => {
      if (event.data !== "flush" || this.done) return;
      this.done = true;
      this.port.postMessage({ samples: this.block.slice(0, this.filled), last: true });
    };
  }

  process(inputs) {
    const channels = inputs[0] || [];
    if (this.done || !channels.length) return !this.done;
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      this.block[this.filled++] = sum / channels.length;
      if (this.filled === BLOCK) {
        this.port.postMessage({ samples: this.block, last: false });
        this.block = new Float32Array(BLOCK);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
