#!/usr/bin/env node
// bench.js - forward latency of an ONNX model in ONNX Runtime (CPU), the peer of
// tools/bench_infer.c in scripts/bench_infer.sh:
//   node tools/ort/bench.js MODEL.onnx THREADS BATCHES(1,32) WARMUP RUNS [SIZE(224)]
// Prints the same tab-separated lines: name batch median_ms min_ms images_per_s.
'use strict';
const ort = require('onnxruntime-node');

async function main() {
  const [model, threads, batches, warmup, runs, sizeArg] = process.argv.slice(2);
  const S = Number(sizeArg || 224);
  if (!runs) throw new Error('usage: bench.js MODEL.onnx THREADS BATCHES WARMUP RUNS');
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1, graphOptimizationLevel: 'all'});
  const name = session.inputNames[0];
  for (const b of batches.split(',').map(Number)) {
    const n = b * 3 * S * S, data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = ((i * 7919) % 2001) / 1000 - 1;
    const feeds = {[name]: new ort.Tensor('float32', data, [b, 3, S, S])};
    const t = [];
    for (let i = 0; i < Number(warmup) + Number(runs); i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      if (i >= Number(warmup)) t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    t.sort((a, c) => a - c);
    const med = t[t.length >> 1];
    console.log(`onnxruntime\t${b}\t${med.toFixed(3)}\t${t[0].toFixed(3)}\t${(b * 1e3 / med).toFixed(1)}`);
  }
}

main().catch((e) => {
  console.error(`bench.js: ${e.message}`);
  process.exit(1);
});
