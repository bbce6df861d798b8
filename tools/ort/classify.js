#!/usr/bin/env node
// classify.js - the ONNX Runtime side of scripts/bench_infer.sh's whole-process
// comparison: what `whisker classify PHOTO --model M` does, in Node: load the
// model, decode the photo (sharp/libvips), resize the shorter side to RESIZE
// (256), centre-crop CROP (224), normalise with ImageNet's mean and std, run, softmax, print
// the top class.
//   node tools/ort/classify.js MODEL.onnx CLASSES.txt PHOTO [THREADS [RESIZE CROP]]
// CLASSES.txt: one class name per line (index order).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');
const sharp = require('sharp');

async function main() {
  const [model, classesPath, photo, threads, resizeArg, cropArg] = process.argv.slice(2);
  const R = Number(resizeArg || 256), S = Number(cropArg || 224);
  if (!photo) throw new Error('usage: classify.js MODEL.onnx CLASSES.txt PHOTO [THREADS]');
  const opts = {};
  if (threads) opts.intraOpNumThreads = Number(threads), opts.interOpNumThreads = 1;
  const [session, pixels] = await Promise.all([
    ort.InferenceSession.create(model, opts),
    sharp(photo).rotate().removeAlpha().toColourspace('srgb')
      .resize(R, R, {fit: 'outside', kernel: 'linear'})
      .raw().toBuffer({resolveWithObject: true}),
  ]);
  const {data, info} = pixels;
  const x0 = (info.width - S) >> 1, y0 = (info.height - S) >> 1;
  const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
  const input = new Float32Array(3 * S * S);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const p = ((y + y0) * info.width + (x + x0)) * 3;
      for (let c = 0; c < 3; c++) input[c * S * S + y * S + x] = (data[p + c] / 255 - mean[c]) / std[c];
    }
  const out = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, S, S])});
  const logits = out[session.outputNames[0]].data;
  let best = 0, max = -Infinity, sum = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i], best = i;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const names = fs.readFileSync(classesPath, 'utf8').split('\n');
  console.log(`${photo}\t${names[best]} ${(1 / sum).toFixed(4)}`);
}

main().catch((e) => {
  console.error(`classify.js: ${e.message}`);
  process.exit(1);
});
