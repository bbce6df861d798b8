#!/usr/bin/env node
// bench.js - forward latency of an ONNX model in ONNX Runtime (CPU), the peer of
// tools/bench_infer.c in scripts/bench_infer.sh:
//   node tools/ort/bench.js MODEL.onnx THREADS BATCHES(1,32) WARMUP RUNS [SIZE(224)]
//   node tools/ort/bench.js MODEL.onnx THREADS BATCH WARMUP turns [SIZE(224)]
// Prints the same tab-separated lines: name batch median_ms min_ms images_per_s.
// With "turns" for RUNS it speaks wk_bench_infer --turns' protocol on stdin and
// stdout (scripts/bench_turns.py): "ready BATCH", then for each line N, 2
// untimed runs and N timed ones, their times in ms on one line; ends at EOF or 0.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

// One line from stdin, read synchronously (null at EOF): the turn's request.
let pending = '';
function readLine() {
  const buf = Buffer.alloc(256);
  for (;;) {
    const nl = pending.indexOf('\n');
    if (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      if (e.code === 'EOF') return null;
      throw e;
    }
    if (n === 0) {
      const last = pending;
      pending = '';
      return last.length ? last : null;
    }
    pending += buf.toString('utf8', 0, n);
  }
}

async function serveTurns(session, feeds, b) {
  process.stdout.write(`ready ${b}\n`);
  for (let line; (line = readLine()) !== null;) {
    const n = Number(line.trim());
    if (n === 0) return;
    if (!Number.isInteger(n) || n < 0 || n > 100000) throw new Error(`--turns: bad request '${line}'`);
    const t = [];
    for (let i = 0; i < 2 + n; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      if (i >= 2) t.push((Number(process.hrtime.bigint() - t0) / 1e6).toFixed(4));
    }
    fs.writeSync(1, t.join(' ') + '\n');
  }
}

async function main() {
  const [model, threads, batches, warmup, runs, sizeArg] = process.argv.slice(2);
  const S = Number(sizeArg || 224);
  if (!runs) throw new Error('usage: bench.js MODEL.onnx THREADS BATCHES WARMUP RUNS|turns');
  const turns = runs === 'turns';
  if (turns && batches.includes(',')) throw new Error('turns takes one batch size');
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1, graphOptimizationLevel: 'all'});
  const name = session.inputNames[0];
  for (const b of batches.split(',').map(Number)) {
    const n = b * 3 * S * S, data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = ((i * 7919) % 2001) / 1000 - 1;
    const feeds = {[name]: new ort.Tensor('float32', data, [b, 3, S, S])};
    if (turns) {
      for (let i = 0; i < Number(warmup); i++) await session.run(feeds);
      await serveTurns(session, feeds, b);
      return;
    }
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
