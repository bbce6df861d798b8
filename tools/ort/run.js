#!/usr/bin/env node
// run.js - runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU) on one
// raw input, for tests/test_onnx_ort.c:
//   node tools/ort/run.js MODEL.onnx INPUT.f32 N,C,H,W OUTPUT.f32
// INPUT.f32 is little-endian float32 NCHW; OUTPUT.f32 receives the first output
// (float32, row-major). Exits 1 with a message on any error.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, dimText, output] = process.argv.slice(2);
  if (!output) throw new Error('usage: run.js MODEL.onnx INPUT.f32 N,C,H,W OUTPUT.f32');
  const dims = dimText.split(',').map(Number);
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model, {graphOptimizationLevel: 'disabled'});
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, dims)};
  const result = await session.run(feeds);
  const y = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(`${session.outputNames[0]} [${y.dims.join(', ')}]`);
}

main().catch((e) => {
  console.error(`run.js: ${e.message}`);
  process.exit(1);
});
