/* model.h - whisker's model file: a safetensors file that PyTorch reads as is.
 *
 * Tensors carry PyTorch's names and layouts (conv weights OIHW, a
 * num_batches_tracked I64 scalar per batchnorm), so
 * `model.load_state_dict(tensors)` works on the torchvision model of the same
 * architecture. __metadata__ (string values, JSON text where structured):
 *   "format"             "whisker"
 *   "whisker.version"    the writer's version
 *   "whisker.arch"       {"name", "width", "num_classes", "input": [H, W, C],
 *                         "nodes": [{"op", "name", "in", ...attributes}, ...]}
 *   "whisker.classes"    ["cat", "dog", ...]
 *   "whisker.preprocess" {"resize", "crop", "mean": [3], "std": [3]}
 *   "whisker.provenance" free JSON object (data, epochs, accuracy, command)
 * A file without "nodes" (e.g. written by a PyTorch script) is built from the
 * zoo by name. Loading validates the whole file and the graph before any
 * parameter memory is allocated: a bad file is refused with a message naming
 * the file and the problem. Saving is atomic. */
#ifndef WK_MODEL_H
#define WK_MODEL_H

#include "modelio/safetensors.h"
#include "nn/net.h"

#define WK_MODEL_ARCH_MAX 32

/* What a model file may describe: the loader (modelio/arch.c) refuses more,
 * and the ONNX importer refuses a graph that would need more, so that every
 * model it writes loads. */
#define WK_MODEL_MAX_CLASSES 100000 /* classes, and the outputs of any linear node */
#define WK_MODEL_MAX_NODES 100000
#define WK_MODEL_MAX_INPUT_PX 4096  /* the input's height and width */
#define WK_MODEL_MAX_INPUT_CH 64
#define WK_MODEL_MAX_CONV_OUT 65536 /* a conv's output channels, and its groups */
#define WK_MODEL_MAX_KERNEL 64      /* kernels, strides, dilations, a conv's pads */
#define WK_MODEL_MAX_POOL_PAD 32
#define WK_MODEL_MIN_BN_EPS 1e-12   /* a batchnorm's eps lies in [this, 1] */
#define WK_MODEL_CLASS_NAME_MAX 255 /* bytes in a class name (at least 1) */

typedef struct wk_preprocess {
  int resize_px;   /* shorter side resized to this before the centre crop */
  int crop_px;     /* the network input (square) */
  float mean[3];   /* per channel, on [0, 1] pixel values */
  float std[3];
} wk_preprocess;

typedef struct wk_model_meta {
  char arch[WK_MODEL_ARCH_MAX]; /* zoo name, or "custom" */
  float width;                  /* mobilenetv2 width multiplier */
  int n_classes;
  char **class_names;           /* n_classes strings, owned */
  wk_preprocess pre;
  char *provenance;             /* JSON object text, owned, may be NULL */
} wk_model_meta;

/* ImageNet's normalisation, resize 256 / crop 224 scaled to `crop_px`. */
wk_preprocess wk_preprocess_default(int crop_px);
/* A meta with class names "0", "1", ... and default preprocessing. */
wk_status wk_model_meta_init(wk_model_meta *m, const char *arch, int n_classes, int crop_px);
/* Replaces class i's name (copied). */
wk_status wk_model_meta_set_class(wk_model_meta *m, int i, const char *name);
/* Checks that name may be class i's in a model file: 1 to
 * WK_MODEL_CLASS_NAME_MAX bytes of valid UTF-8 (core/utf8.h); control
 * characters are allowed (JSON escapes them). Fails with WK_ERR_FORMAT and
 * "WHERE: class name I is empty" (is longer than .., is not valid UTF-8
 * (byte B)), where naming the file (and line). The loader, the writer, the
 * ONNX importer and exporter and the labels reader all apply it, so what one
 * writes the other reads. */
wk_status wk_model_check_class_name(const char *where, int i, const char *name);
/* wk_model_check_class_name on each of m's class names in turn. */
wk_status wk_model_meta_check_classes(const wk_model_meta *m, const char *where);
/* Replaces the class names with those of a labels file (`whisker import
 * --labels`): one name per line, as many as m has classes. Lines end in LF,
 * CRLF or CR; a UTF-8 byte order mark before the first and blank lines are
 * skipped; every other line must pass wk_model_check_class_name (and hold no
 * NUL byte), or the file is refused naming its line and the class. */
wk_status wk_model_meta_read_labels(wk_model_meta *m, const char *path);
/* Replaces the provenance JSON (copied; must parse as a JSON object). */
wk_status wk_model_meta_set_provenance(wk_model_meta *m, const char *json);
void wk_model_meta_free(wk_model_meta *m);

/* Writes net and meta to path atomically; `extra` tensors and metadata pairs
 * (a checkpoint's optimizer state) are added after the model's. */
wk_status wk_model_save(const char *path, wk_net *net, const wk_model_meta *meta,
                        const wk_st_entry *extra, size_t n_extra, const wk_st_meta *extra_meta,
                        size_t n_extra_meta);

/* The same with parameters and buffers stored as IEEE half precision (half the
 * size; loading converts back to f32). For shipping a trained model, not for
 * checkpoints. */
wk_status wk_model_save_f16(const char *path, wk_net *net, const wk_model_meta *meta);
/* f32 -> IEEE f16 bits, rounded to nearest even (exposed for tests). */
uint16_t wk_f32_to_f16(float f);

/* wk_st_open for a model file: a file that is an ONNX model (by its name or its
 * first bytes) is refused with the command that converts it, not with what its
 * bytes mean as a safetensors header. */
wk_status wk_model_open(const char *path, wk_st_file **out);
/* Builds the network a file describes and loads its weights. */
wk_status wk_model_load(wk_ctx *ctx, const char *path, wk_net **net, wk_model_meta *meta);
/* The same from an already open file (checkpoints read more from it). */
wk_status wk_model_load_file(wk_ctx *ctx, const wk_st_file *f, wk_net **net,
                             wk_model_meta *meta);

/* Conv weights of parameter p between whisker's (O, KH, KW, I) and PyTorch's
 * (O, I, KH, KW), which ONNX shares; to_torch picks the direction. */
void wk_conv_weight_transpose(const wk_param *p, const float *src, float *dst, bool to_torch);

/* Architecture JSON (arch.c): a network's "whisker.arch" text (malloc'ed), and
 * a network built (not finalized) from one. */
wk_status wk_arch_to_json(const wk_net *net, const wk_model_meta *meta, char **out);
wk_status wk_arch_from_json(wk_ctx *ctx, const char *json, const char *what, wk_net **net,
                            wk_model_meta *meta);

#endif
