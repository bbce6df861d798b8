/* test_cli.c - the whisker program as a user meets it: exit codes, where output
 * goes, and messages for mistakes. Runs the built binary (WHISKER_BIN). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

typedef struct {
  int code;
  char out[8192];
  char err[8192];
} run_result;

static void slurp(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot read %s", path);
  size_t got = fread(buf, 1, n - 1, f);
  buf[got] = '\0';
  fclose(f);
}

/* `whisker ARGS` with stdin from in (a shell redirection or pipe source:
 * "< FILE" or a command before a pipe is not possible here, so a path). */
static run_result run_in(const char *args, const char *in);

static run_result run(const char *args) { return run_in(args, "/dev/null"); }

static run_result run_in(const char *args, const char *in) {
  const char *bin = getenv("WHISKER_BIN");
  ck_assert_msg(bin && *bin, "WHISKER_BIN is not set (run through ctest)");
  char out_path[] = "/tmp/wk_cli_out_XXXXXX", err_path[] = "/tmp/wk_cli_err_XXXXXX";
  int fo = mkstemp(out_path), fe = mkstemp(err_path);
  ck_assert(fo >= 0 && fe >= 0);
  char cmd[8192];
  ck_assert_msg((size_t)snprintf(cmd, sizeof cmd, "'%s' %s >%s 2>%s <'%s'", bin, args, out_path,
                                 err_path, in) < sizeof cmd,
                "command line too long: %s", args);
  int st = system(cmd);
  run_result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  slurp(out_path, r.out, sizeof r.out);
  slurp(err_path, r.err, sizeof r.err);
  remove(out_path), remove(err_path);
  return r;
}

/* Runs whisker with args and expects exit 1 with `says` in its stderr. */
static void run_fails(const char *args, const char *says) {
  const run_result r = run(args);
  ck_assert_msg(r.code == 1 && strstr(r.err, says), "%s: exit %d, stderr: %s", args, r.code,
                r.err);
}

/* OpenMP's idle threads (src/cli/omp_wait.c): with neither OMP_WAIT_POLICY
 * nor GOMP_SPINCOUNT set, libgomp itself (its OMP_DISPLAY_ENV report, printed
 * from its constructor) runs with whisker's short spin, and `whisker system`
 * says so; a user's setting of either is what libgomp runs with. Another
 * OpenMP runtime (no GOMP_SPINCOUNT in its report) has nothing to check. */
START_TEST(test_openmp_wait_setting) {
  unsetenv("OMP_WAIT_POLICY");
  unsetenv("GOMP_SPINCOUNT");
  setenv("OMP_DISPLAY_ENV", "verbose", 1);
  run_result r = run("--version");
  if (!strstr(r.err, "GOMP_SPINCOUNT")) {
    unsetenv("OMP_DISPLAY_ENV");
    return;
  }
  ck_assert_msg(r.code == 0 && strstr(r.err, "GOMP_SPINCOUNT = '3000'"), "stderr: %s", r.err);
  setenv("GOMP_SPINCOUNT", "7", 1);
  r = run("--version");
  ck_assert_msg(strstr(r.err, "GOMP_SPINCOUNT = '7'"), "stderr: %s", r.err);
  unsetenv("GOMP_SPINCOUNT");
  setenv("OMP_WAIT_POLICY", "active", 1);
  r = run("--version");
  ck_assert_msg(strstr(r.err, "OMP_WAIT_POLICY = 'ACTIVE'") &&
                    !strstr(r.err, "GOMP_SPINCOUNT = '3000'"), "stderr: %s", r.err);
  r = run("system");
  ck_assert_msg(strstr(r.out, "openmp: idle threads wait as OMP_WAIT_POLICY=active, "
                              "GOMP_SPINCOUNT=(unset) say\n"), "stdout: %s", r.out);
  unsetenv("OMP_WAIT_POLICY");
  unsetenv("OMP_DISPLAY_ENV");
  r = run("system");
  ck_assert_msg(strstr(r.out, "openmp: idle threads spin briefly, then sleep "
                              "(GOMP_SPINCOUNT=3000, whisker's default)\n"), "stdout: %s", r.out);
}
END_TEST

START_TEST(test_version_and_help) {
  run_result r = run("--version");
  ck_assert_int_eq(r.code, 0);
  ck_assert_msg(!strncmp(r.out, "whisker ", 8), "stdout: %s", r.out);
  r = run("--help");
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: whisker"));
  ck_assert_ptr_nonnull(strstr(r.out, "system"));
  ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(test_usage_errors_exit_2) {
  run_result r = run("");
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "usage: whisker"));
  r = run("frobnicate");
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "'frobnicate' is not a whisker command"));
  ck_assert_str_eq(r.out, "");
  r = run("system --bogus");
  ck_assert_int_eq(r.code, 2);
}
END_TEST

START_TEST(test_system_reports_backends) {
  run_result r = run("system");
  ck_assert_int_eq(r.code, 0);
  ck_assert_msg(strstr(r.out, "cpu: oneDNN") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.out, "CUDA") != NULL, "stdout: %s", r.out);
  r = run("system --help");
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: whisker system"));
}
END_TEST

START_TEST(test_bad_environment_is_a_failure_not_a_crash) {
  run_result r = run("system");
  ck_assert_msg(r.code == 0, "system, as is: rc %d: %s", r.code, r.err); /* the variable's doing */
  setenv("WHISKER_IMPL", "turbo", 1);
  r = run("system");
  unsetenv("WHISKER_IMPL");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "WHISKER_IMPL") != NULL, "stderr: %s", r.err);
}
END_TEST

/* Issue 7's "a missing or incompatible driver falls back to CPU with a
 * warning, or fails clearly when --device cuda was asked for", as a user of
 * this machine meets it: no driver (or a build without the CUDA backend).
 * Where `whisker system` finds a GPU it checks nothing, says so, and counts
 * as passed. */
START_TEST(test_without_a_gpu_auto_falls_back_and_cuda_fails) {
  run_result sys = run("system");
  ck_assert_int_eq(sys.code, 0);
  if (strstr(sys.out, "device 0: ")) {
    printf("test_cli: a GPU is present: the no-GPU fallback is not tested here\n");
    return;
  }
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  unsetenv("WHISKER_LOG"); /* the warning is the point */
  unsetenv("WHISKER_MODEL");
  char args[1024];
#define WKT_CLASSIFY_CAT \
  "classify '%s/data/samples/cat.jpg' --model '%s/pretrained/default.safetensors' --device %s"
  ck_assert((size_t)snprintf(args, sizeof args, WKT_CLASSIFY_CAT, src, src, "auto") < sizeof args);
  run_result r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "\tcat ") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.err, "warning: --device auto: no usable GPU (") != NULL &&
                    strstr(r.err, "); running on the CPU") != NULL,
                "stderr: %s", r.err);
  ck_assert((size_t)snprintf(args, sizeof args, WKT_CLASSIFY_CAT, src, src, "cuda") < sizeof args);
#undef WKT_CLASSIFY_CAT
  r = run(args);
  ck_assert_msg(r.code == 1, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_str_eq(r.out, "");
  ck_assert_msg(strstr(r.err, "--device cuda:0: no usable GPU: ") != NULL &&
                    strstr(r.err, "--device cpu or auto run without one") != NULL,
                "stderr: %s", r.err);
}
END_TEST

/* classify over good and bad files: the good one is printed, each bad one is
 * named on stderr with its problem, and the exit status is 1 so a script sees
 * the loss; a directory holding a bad file does the same. */
START_TEST(test_classify_reports_bad_images_and_fails) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_bad_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[512], args[2048];
  snprintf(path, sizeof path, "%s/notes.jpg", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("not a photo\n", f);
  fclose(f);
  ck_assert((size_t)snprintf(args, sizeof args,
                             "classify '%s' '%s/data/samples/cat.jpg' '%s/missing.png' "
                             "--model '%s/pretrained/default.safetensors'",
                             path, src, dir, src) < sizeof args);
  run_result r = run(args);
  ck_assert_msg(r.code == 1, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "cat.jpg\tcat ") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.out, "notes.jpg") == NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.err, "notes.jpg: not an image") != NULL, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "missing.png: cannot open") != NULL, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "2 of 3 images could not be classified") != NULL, "stderr: %s",
                r.err);
  /* --json: a line per file, in order, the bad ones with their reason */
  strcat(args, " --json");
  r = run(args);
  ck_assert_msg(r.code == 1, "exit %d, stderr: %s", r.code, r.err);
  const char *l1 = strstr(r.out, "notes.jpg\", \"error\": \"not an image (");
  const char *l2 = strstr(r.out, "cat.jpg\", \"top\": [{\"class\": \"cat\"");
  const char *l3 = strstr(r.out, "missing.png\", \"error\": \"cannot open");
  ck_assert_msg(l1 && l2 && l3 && l1 < l2 && l2 < l3, "stdout: %s", r.out);
  /* a directory: the same rule */
  snprintf(args, sizeof args, "cp '%s/data/samples/cat.jpg' '%s/'", src, dir);
  ck_assert_int_eq(system(args), 0);
  ck_assert((size_t)snprintf(args, sizeof args,
                             "classify '%s' --model '%s/pretrained/default.safetensors'", dir,
                             src) < sizeof args);
  r = run(args);
  ck_assert_msg(r.code == 1, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "/cat.jpg\tcat ") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.err, "1 of 2 images could not be classified") != NULL, "stderr: %s",
                r.err);
  /* all good: 0 */
  snprintf(path, sizeof path, "%s/notes.jpg", dir);
  ck_assert_int_eq(remove(path), 0);
  r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  snprintf(path, sizeof path, "%s/cat.jpg", dir);
  ck_assert_int_eq(remove(path), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* classify over a folder with a link back up (sub/loop -> ..) and a FIFO
 * named like a photo: each photo is classified once, the loop is skipped
 * with a warning naming it (it listed the folder again at every level, 8
 * deep), and the FIFO is refused by name without blocking on its open. */
START_TEST(test_classify_folder_loop_and_fifo) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_loop_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[2048];
  ck_assert((size_t)snprintf(cmd, sizeof cmd,
                             "mkdir '%s/sub' && cp '%s/data/samples/cat.jpg' '%s/sub/' && "
                             "ln -s .. '%s/sub/loop' && mkfifo '%s/pipe.jpg'",
                             dir, src, dir, dir, dir) < sizeof cmd);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert((size_t)snprintf(cmd, sizeof cmd,
                             "classify '%s' --model '%s/pretrained/default.safetensors'", dir,
                             src) < sizeof cmd);
  run_result r = run(cmd);
  ck_assert_msg(r.code == 1, "exit %d, stderr: %s", r.code, r.err);
  const char *hit = strstr(r.out, "/sub/cat.jpg\tcat ");
  ck_assert_msg(hit && !strstr(hit + 12, "cat.jpg"), "stdout: %s", r.out); /* once */
  ck_assert_msg(strstr(r.err, "/sub/loop: a link back to a folder above it (a loop)"),
                "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "/pipe.jpg: not a regular file"), "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "1 of 2 images could not be classified"), "stderr: %s", r.err);
  snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* classify -: a photo on standard input, from a file and from a pipe (cat |),
 * beside a named file; empty input, a non-image and '-' twice are refused with
 * messages naming standard input; more than the file size limit is refused
 * without reading it all into memory. */
START_TEST(test_classify_reads_stdin) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char cat[512], args[2048], model[512], text[512];
  snprintf(cat, sizeof cat, "%s/data/samples/cat.jpg", src);
  snprintf(text, sizeof text, "%s/README.md", src);
  snprintf(model, sizeof model, "--model '%s/pretrained/default.safetensors'", src);
  snprintf(args, sizeof args, "classify - %s", model);
  run_result r = run_in(args, cat);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(!strncmp(r.out, "-\tcat 0.99", 10), "stdout: %s", r.out);
  snprintf(args, sizeof args, "classify '%s' - %s --json", cat, model);
  r = run_in(args, cat);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "\n{\"file\": \"-\", \"top\": [{\"class\": \"cat\"") != NULL,
                "stdout: %s", r.out);
  /* a pipe: no size to stat, read to its end */
  const char *bin = getenv("WHISKER_BIN");
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "cat '%s' | '%s' classify - %s | grep -q '^-.cat 0.99'", cat, bin,
           model);
  ck_assert_msg(system(cmd) == 0, "%s", cmd);
  snprintf(cmd, sizeof cmd,
           "head -c 300000000 /dev/zero | '%s' classify - %s 2>&1 >/dev/null | "
           "grep -q -- '-: more than 268435456 bytes on standard input'", bin, model);
  ck_assert_msg(system(cmd) == 0, "%s", cmd);
  snprintf(args, sizeof args, "classify - %s", model);
  r = run_in(args, "/dev/null");
  ck_assert_msg(r.code == 1 && strstr(r.err, "-: empty file"), "exit %d, stderr: %s", r.code,
                r.err);
  r = run_in(args, text);
  ck_assert_msg(r.code == 1 && strstr(r.err, "-: not an image"), "exit %d, stderr: %s", r.code,
                r.err);
  snprintf(args, sizeof args, "classify - - %s", model);
  r = run_in(args, cat);
  ck_assert_msg(r.code == 2 && strstr(r.err, "'-' (standard input) given twice"),
                "exit %d, stderr: %s", r.code, r.err);
  ck_assert_str_eq(r.out, "");
}
END_TEST

/* A file name that is not UTF-8 (Latin-1 "caf\xe9.jpg") in classify's JSON lines:
 * the byte JSON cannot carry becomes U+FFFD, so each line stays valid JSON (no
 * byte above 0x7f is left); the text output keeps the name as it is. */
START_TEST(test_classify_json_names_stay_valid) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_utf8_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[2048], args[2048];
  snprintf(cmd, sizeof cmd, "cp '%s/data/samples/cat.jpg' \"%s/$(printf 'caf\\351.jpg')\"", src,
           dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(args, sizeof args, "classify '%s' --model '%s/pretrained/default.safetensors' --json",
           dir, src);
  run_result r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "/caf\\ufffd.jpg\", \"top\": [{\"class\": \"cat\"") != NULL,
                "stdout: %s", r.out);
  for (const char *p = r.out; *p; p++)
    ck_assert_msg((unsigned char)*p < 0x80, "a raw byte 0x%02x in: %s", (unsigned char)*p, r.out);
  args[strlen(args) - strlen(" --json")] = '\0';
  r = run(args);
  ck_assert_msg(r.code == 0 && strstr(r.out, "/caf\xe9.jpg\tcat "), "stdout: %s", r.out);
  snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Mistakes a user makes on the command line get a short answer that says what
 * to do: alternatives given together are refused (exit 2) instead of one
 * silently winning; a mistyped option is matched to the nearest real one; an
 * ONNX file given as a model points at 'whisker import'; a dataset root with
 * train/ and val/ given to eval points at val/; an empty folder given to
 * classify is named; 'whisker help COMMAND' is the command's help. */
START_TEST(test_usage_mistakes_are_explained) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_hint_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[4096], args[2048], model[1024];
  snprintf(model, sizeof model, "'%s/pretrained/default.safetensors'", src);
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/root/train/cat' '%s/root/val/cat' '%s/empty' '%s/one/cat' && "
           "cp '%s/data/samples/cat.jpg' '%s/root/val/cat/' && "
           "cp '%s/data/samples/cat.jpg' '%s/root/train/cat/' && "
           "cp '%s/data/samples/cat.jpg' '%s/one/cat/' && printf '\\010\\007\\022\\010pytorch' "
           "> '%s/net.bin'",
           dir, dir, dir, dir, src, dir, src, dir, src, dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  static const struct {
    const char *args, *err;
  } refused[] = {
      {"train D --out R --lr 0.1 --lr-find", "--lr and --lr-find are alternatives: give one"},
      {"train D --out R --val-pct 10 --val V", "--val and --val-pct are alternatives: give one"},
      {"train D --out R --resume --overwrite", "--resume and --overwrite are alternatives"},
      {"finetune D --from M --out R --model resnet18", "--model does not apply: the network is "
                                                       "--from's"},
      {"convert a b --f32 --f16", "--f16 and --f32 are alternatives: give one"},
      {"train D --out R --epoch 3", "unknown option '--epoch'; did you mean --epochs?"},
      {"train D --out R --epochs=3", "unknown option '--epochs=3': give the value after a space, "
                                     "'--epochs 3'"},
      {"classify x.jpg --json=1", "unknown option '--json=1': --json takes no value; give "
                                  "'--json' alone"},
      {"train D --out R --resume=yes", "--resume takes no value"},
      {"train D --out R --lr=0.1", "give the value after a space, '--lr 0.1'"},
      {"clicks eval x --labels l --json=1", "--json takes no value"},
      {"clicks eval x --labels l --model=m", "--model is an option of clicks score only"},
      {"clicks score x --model m --epoch 3", "unknown option '--epoch' ('whisker clicks --help'"},
      {"finetune D --from M --out R --head-epoch 2", "did you mean --head-epochs?"},
      {"classify x.jpg --jsn", "unknown option '--jsn'; did you mean --json?"},
      {"eval D --model M --frobnicate", "unknown option '--frobnicate' ('whisker eval --help' "
                                        "lists the options)"},
      {"clicks render x --out o --min-event 3", "did you mean --min-events?"},
      {"train D E --out R", "unexpected argument 'E' ('whisker train --help' shows the usage)"},
      {"help frobnicate", "'frobnicate' is not a whisker command"},
  };
  for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
    run_result r = run(refused[k].args);
    ck_assert_msg(r.code == 2 && strstr(r.err, refused[k].err) && !strstr(r.err, "usage:"),
                  "%s: exit %d, stderr: %s", refused[k].args, r.code, r.err);
  }
  run_result r;
  /* a missing required argument is named above the usage */
  static const struct {
    const char *args, *err;
  } missing[] = {{"eval x", "whisker eval: --model MODEL is required\n\nusage:"},
                 {"export m", "whisker export: OUT.onnx is missing\n\nusage:"},
                 {"info", "whisker info: MODEL is required\n\nusage:"},
                 {"train x", "whisker train: --out RUN_DIR is required\n\nusage: whisker train"},
                 {"finetune x --out y", "--from MODEL is required\n\nusage: whisker finetune"}};
  for (size_t k = 0; k < sizeof missing / sizeof missing[0]; k++) {
    r = run(missing[k].args);
    ck_assert_msg(r.code == 2 && strstr(r.err, missing[k].err), "%s: exit %d, stderr: %s",
                  missing[k].args, r.code, r.err);
  }
  /* train's: the synopsis and where the rest is, not its 75 lines of help */
  r = run("train x");
  ck_assert_msg(strstr(r.err, "\n'whisker train --help' describes every option.\n") &&
                    !strstr(r.err, "Trains a classifier"),
                "stderr: %s", r.err);
  r = run("help classify");
  ck_assert_msg(r.code == 0 && !strncmp(r.out, "usage: whisker classify", 23), "stdout: %s", r.out);
  snprintf(args, sizeof args, "classify '%s/data/samples/cat.jpg' --model '%s/net.bin'", src, dir);
  run_fails(args, "net.bin: an ONNX model, not a whisker model file; "
                  "convert it first: 'whisker import ");
  /* a photo given as the model is named for what it is */
  snprintf(args, sizeof args, "info '%s/data/samples/cat.jpg'", src);
  run_fails(args, "cat.jpg: a JPEG image, not a whisker model file (");
  /* and a whisker model given to import */
  snprintf(args, sizeof args, "import '%s/pretrained/default.safetensors' '%s/x.safetensors'", src,
           dir);
  run_fails(args, "default.safetensors: a whisker model (safetensors), "
                  "not an ONNX model");
  snprintf(args, sizeof args, "eval '%s/root' --model %s", dir, model);
  r = run(args);
  ck_assert_msg(r.code == 1 && strstr(r.err, "root holds the splits train/ and val/, not a folder "
                                             "per class: evaluate on the photos training did not "
                                             "see,") && strstr(r.err, "/root/val\n"),
                "exit %d, stderr: %s", r.code, r.err);
  snprintf(args, sizeof args, "eval '%s/one' --model %s", dir, model);
  run_fails(args, "one has 1 class folder, the model 2 classes");
  snprintf(args, sizeof args, "classify '%s/empty' --model %s", dir, model);
  run_fails(args, "empty: no image files (.jpg, .jpeg, .jpe, .jfif, "
                  ".png) in this folder");
  snprintf(args, sizeof args, "classify '%s/empty' '%s/one' --model %s --top 5", dir, dir, model);
  r = run(args);
  ck_assert_msg(r.code == 0 && strstr(r.err, "warning: ") &&
                    strstr(r.err, "empty: no image files") &&
                    strstr(r.out, "/one/cat/cat.jpg\tcat 0.9") && strstr(r.out, ", dog 0.0"),
                "exit %d, stdout: %s, stderr: %s", r.code, r.out, r.err);
  snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* What train can know before training is refused before it: an unknown
 * --model is a usage error and makes no run folder; one class folder, a --out
 * that is a file and (not as root, who may write anywhere) a folder it cannot
 * write in are failures naming the path, before the first epoch. export and
 * convert refuse to write over a pipe, which stays a pipe. */
START_TEST(test_train_refuses_before_training) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_refuse_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[4096], args[2048];
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/one/cat' '%s/ro' && for i in 1 2 3 4 5 6; do cp '%s/data/samples/cat.jpg' "
           "'%s/one/cat/'$i.jpg; done && touch '%s/afile' && mkfifo '%s/pipe.onnx'",
           dir, dir, src, dir, dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  const char *quick = "--model smallcnn --size 32 --epochs 1 --batch 2";
  snprintf(args, sizeof args, "train '%s/one' --out '%s/run' --model vgg16", dir, dir);
  run_result r = run(args);
  ck_assert_msg(r.code == 2 && strstr(r.err, "unknown --model 'vgg16' (smallcnn, resnet18"),
                "exit %d, stderr: %s", r.code, r.err);
  snprintf(cmd, sizeof cmd, "%s/run", dir);
  ck_assert_int_ne(access(cmd, F_OK), 0);
  snprintf(args, sizeof args, "train '%s/one' --out '%s/run' %s", dir, dir, quick);
  run_fails(args, "one: 1 class ('cat'): a classifier needs");
  /* a --from that is no model: told before the data, and no run folder made */
  snprintf(args, sizeof args, "finetune '%s/one' --out '%s/ft' --from '%s/data/samples/cat.jpg'",
           dir, dir, src);
  r = run(args);
  ck_assert_msg(r.code == 1 && strstr(r.err, "cat.jpg: a JPEG image, not a whisker model file") &&
                    !strstr(r.err, "1 class"),
                "exit %d, stderr: %s", r.code, r.err);
  snprintf(cmd, sizeof cmd, "%s/ft", dir);
  ck_assert_int_ne(access(cmd, F_OK), 0);
  snprintf(args, sizeof args, "train '%s/one' --out '%s/afile' %s", dir, dir, quick);
  run_fails(args, "afile: not a folder: a file of that name exists");
  if (geteuid() != 0) {
    snprintf(cmd, sizeof cmd, "%s/ro", dir);
    ck_assert_int_eq(chmod(cmd, 0555), 0);
    snprintf(args, sizeof args, "train '%s/one' --out '%s/ro' %s", dir, dir, quick);
    run_fails(args, "ro: cannot write in the run folder");
  }
  snprintf(args, sizeof args, "export '%s/pretrained/default.safetensors' '%s/pipe.onnx'", src,
           dir);
  run_fails(args, "pipe.onnx: not a regular file (a pipe)");
  snprintf(args, sizeof args, "convert '%s/pretrained/default.safetensors' '%s/pipe.onnx'", src,
           dir);
  run_fails(args, "pipe.onnx: not a regular file (a pipe)");
  struct stat st;
  snprintf(cmd, sizeof cmd, "%s/pipe.onnx", dir);
  ck_assert_int_eq(lstat(cmd, &st), 0);
  ck_assert(S_ISFIFO(st.st_mode));
  snprintf(cmd, sizeof cmd, "chmod 755 '%s/ro' && rm -rf '%s'", dir, dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A second train into a run folder that holds a run does not replace its model
 * unless told: refused (naming the folder and both ways on) before any data is
 * read, the model left as it was; --overwrite starts over in its place. A
 * --resume with no run to continue says so and makes no folder. */
START_TEST(test_train_keeps_an_earlier_run) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_rerun_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[4096], args[2048], path[1024];
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/d/cat' '%s/d/dog' && for i in 1 2 3 4; do "
           "cp '%s/data/samples/cat.jpg' '%s/d/cat/'$i.jpg; cp '%s/data/samples/cat.jpg' "
           "'%s/d/dog/'$i.jpg; done",
           dir, dir, src, dir, src, dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(args, sizeof args,
           "train '%s/d' --out '%s/run' --model smallcnn --size 32 --epochs 2 --batch 2 "
           "--val-pct 50",
           dir, dir);
  run_result r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  snprintf(path, sizeof path, "%s/run/model.safetensors", dir);
  struct stat before, after;
  ck_assert_int_eq(stat(path, &before), 0);
  run_fails(args, "run: holds a run already (checkpoint.safetensors): "
                  "--resume continues it, --overwrite starts a new one");
  ck_assert_int_eq(stat(path, &after), 0);
  ck_assert(before.st_ino == after.st_ino && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
            before.st_mtim.tv_sec == after.st_mtim.tv_sec);
  strcat(args, " --overwrite");
  r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_int_eq(stat(path, &after), 0);
  ck_assert(before.st_ino != after.st_ino); /* written anew (atomically: a new file) */
  /* --resume where there is no run: said so, and no folder made */
  snprintf(args, sizeof args, "train '%s/d' --out '%s/none' --resume", dir, dir);
  run_fails(args, "none: no run to resume (no checkpoint.safetensors); "
                  "leave out --resume to start one");
  snprintf(path, sizeof path, "%s/none", dir);
  ck_assert_int_ne(access(path, F_OK), 0);
  snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* eval over a folder with a file that is no image, a JPEG cut in its header
 * (both refused by the scan) and one cut in its image data (fails to decode):
 * each named on stderr, left out of the figures, and counted as skipped in the text
 * and the JSON report; a clean folder reports 0 skipped and no such line. */
START_TEST(test_eval_counts_skipped_images) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char dir[] = "/tmp/wk_cli_eval_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "mkdir '%s/cat' '%s/dog' && cp '%s/data/samples/cat.jpg' '%s/cat/' && "
           "cp '%s/data/samples/cat.jpg' '%s/dog/a.jpg' && echo junk > '%s/dog/junk.jpg' && "
           "head -c 2000 '%s/data/samples/cat.jpg' > '%s/dog/cut.jpg' && "
           "head -c 30000 '%s/data/samples/cat.jpg' > '%s/dog/half.jpg'",
           dir, dir, src, dir, src, dir, dir, src, dir, src, dir);
  ck_assert_int_eq(system(cmd), 0);
  char args[1024];
  ck_assert((size_t)snprintf(args, sizeof args,
                             "eval '%s' --model '%s/pretrained/default.safetensors' --json", dir,
                             src) < sizeof args);
  run_result r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(!strncmp(r.out, "{\"n\": 2, \"skipped\": 3, ", 23), "stdout: %s", r.out);
  ck_assert_msg(strstr(r.err, "junk.jpg: not an image") && strstr(r.err, "cut.jpg: truncated JPEG") &&
                    strstr(r.err, "half.jpg: truncated JPEG ("),
                "stderr: %s", r.err);
  args[strlen(args) - strlen(" --json")] = '\0';
  r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "images     2\nskipped    3 (could not be read") != NULL,
                "stdout: %s", r.out);
  snprintf(cmd, sizeof cmd, "rm '%s/dog/junk.jpg' '%s/dog/cut.jpg' '%s/dog/half.jpg'", dir, dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  r = run(args);
  ck_assert_msg(r.code == 0 && strstr(r.out, "skipped") == NULL, "stdout: %s", r.out);
  strcat(args, " --json");
  r = run(args);
  ck_assert_msg(!strncmp(r.out, "{\"n\": 2, \"skipped\": 0, ", 23), "stdout: %s", r.out);
  snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* An executable shell script at path. */
static void write_script(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  ck_assert_int_eq(chmod(path, 0755), 0);
}

/* `whisker ARGS` with $WHISKER_MPIRUN set to launcher. */
static run_result run_launched(const char *launcher, const char *args) {
  setenv("WHISKER_MPIRUN", launcher, 1);
  run_result r = run(args);
  unsetenv("WHISKER_MPIRUN");
  return r;
}

/* --gpus and --procs (cli/launch.c): malformed lists and contradictions are
 * usage errors naming the option, before any data is read or process started;
 * a GPU that is not there is a failure that says so (on any machine: GPU 999). */
START_TEST(test_gpus_and_procs_are_checked) {
  static const struct {
    const char *args, *says;
  } usage[] = {
      {"train d --out r --gpus a", "--gpus needs GPU numbers separated by commas"},
      {"train d --out r --gpus -1", "--gpus needs GPU numbers"},
      {"train d --out r --gpus 0,,1", "--gpus needs GPU numbers"},
      {"train d --out r --gpus 0,", "ends with a comma"},
      {"train d --out r --gpus 1,1", "GPU 1 is listed twice"},
      {"train d --out r --gpus 0 --device cpu", "contradict"},
      {"train d --out r --gpus 0 --procs 2", "leave out --procs"},
      {"train d --out r --gpus 0 --device cuda:1", "leave out --device cuda:1"},
      {"train d --out r --procs 0", "--procs"},
      {"bench --gpus 0,x", "--gpus needs GPU numbers"},
      {"finetune d --from m --out r --gpus 2,2", "listed twice"},
  };
  for (size_t k = 0; k < sizeof usage / sizeof usage[0]; k++) {
    run_result r = run(usage[k].args);
    ck_assert_msg(r.code == 2, "%s: exit %d, stderr: %s", usage[k].args, r.code, r.err);
    ck_assert_msg(strstr(r.err, usage[k].says) != NULL, "%s: stderr: %s", usage[k].args, r.err);
    ck_assert_str_eq(r.out, "");
  }
  run_result r = run("train d --out r --gpus 999");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--gpus 999: there") != NULL, "stderr: %s", r.err);
  r = run("bench --gpus 0,999");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--gpus 0,999: there") != NULL, "stderr: %s", r.err);
  /* --precision: a name it does not know is a usage error; tf32, bf16 and
   * fp16 without a GPU say they need one; auto (the default) is fp32 here */
  r = run("bench --precision fp8");
  ck_assert_int_eq(r.code, 2);
  ck_assert_msg(strstr(r.err, "expected auto, fp32, tf32, bf16 or fp16") != NULL, "stderr: %s",
                r.err);
  r = run("bench --model smallcnn --size 32 --batch 4 --steps 1 --warmup 0 --latency-runs 1 "
          "--infer-runs 0 --json --precision auto");
  ck_assert_msg(r.code == 0, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.out, "\"precision\": \"fp32\"") != NULL, "stdout: %s", r.out);
  /* --steps 0: inference only, no training figure, the inference ones there */
  r = run("bench --model smallcnn --size 32 --batch 4 --steps 0 --latency-runs 1 --infer-runs 1");
  ck_assert_msg(r.code == 0, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.out, "training   skipped (--steps 0)") != NULL &&
                strstr(r.out, "images/s at batch 4") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.err, "step 0:") == NULL, "stderr: %s", r.err);
  /* --profile: the step's time per op, what it spent outside the nodes, and
   * its slowest nodes (with their output's shape), slowest first */
  r = run("bench --model smallcnn --size 32 --batch 4 --steps 2 --warmup 1 --latency-runs 1 "
          "--infer-runs 0 --profile");
  ck_assert_msg(r.code == 0, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "time per training step by op (ms; wall time of each node):") &&
                    strstr(r.err, "\n  outside nodes ") && strstr(r.err, "\n  conv "),
                "stderr: %s", r.err);
  const char *top = strstr(r.err, "slowest nodes (ms per step):\n");
  ck_assert_msg(top != NULL, "stderr: %s", r.err);
  top = strchr(strchr(top, '\n') + 1, '\n') + 1; /* past the column heads */
  int rows = 0, convs = 0;
  double prev = 101.0;
  for (const char *line = top; *line == ' '; line = strchr(line, '\n') + 1, rows++) {
    const char *pct = strchr(line, '%');
    ck_assert_msg(pct != NULL && pct < strchr(line, '\n'), "row: %s", line);
    const char *num = pct;
    while (num > line && num[-1] != ' ') num--;
    const double share = strtod(num, NULL);
    ck_assert_msg(share <= prev && share >= 0.0, "not slowest first at: %s", line);
    prev = share;
    convs += strncmp(line + 27, "conv 3x3/", 9) == 0;
  }
  ck_assert_msg(rows >= 5 && rows <= 15 && convs >= 1, "%d rows, %d 3x3 convs: %s", rows, convs,
                r.err);
  /* with --steps 0, the inference forwards': forward times only */
  r = run("bench --model smallcnn --size 32 --batch 4 --steps 0 --latency-runs 1 --infer-runs 2 "
          "--profile");
  ck_assert_msg(r.code == 0, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "time per inference forward by op (ms; wall time of each node):") &&
                    strstr(r.err, "slowest nodes (ms per forward):") &&
                    strstr(r.err, "\n  conv             forward ") && !strstr(r.err, "backward"),
                "stderr: %s", r.err);
  r = run("bench --model smallcnn --size 32 --precision fp16");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--precision fp16 needs a GPU") != NULL, "stderr: %s", r.err);
  r = run("bench --model smallcnn --size 32 --precision bf16");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--precision bf16 needs a GPU") != NULL, "stderr: %s", r.err);
  r = run("bench --model smallcnn --size 32 --precision tf32");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--precision tf32 needs a GPU") != NULL, "stderr: %s", r.err);
  /* no launcher to be found: says what to install, starts nothing */
  r = run_launched("/nonexistent/mpirun", "train d --out r --procs 2");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "openmpi-bin") != NULL, "stderr: %s", r.err);
}
END_TEST

/* bench --model FILE: a model file's network, at its own input size and with its
 * classes (the shipped default: MobileNetV2, 224x224, 2 classes); a --size or
 * --classes that disagrees with it, a file that is not there and a name that is
 * neither are failures that say so. */
START_TEST(test_bench_model_file) {
  const char *src = getenv("WHISKER_SOURCE_DIR");
  ck_assert_ptr_nonnull(src);
  char args[2048];
  snprintf(args, sizeof args, "bench --model '%s/pretrained/default.safetensors' --batch 2 "
           "--steps 1 --warmup 0 --latency-runs 1 --infer-runs 1 --json", src);
  run_result r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "default.safetensors\", \"batch\": 2, \"size\": 224,") != NULL,
                "stdout: %s", r.out);
  const char *ips = strstr(r.out, "\"train_images_per_s\": ");
  ck_assert_msg(ips && strtod(ips + 22, NULL) > 0.0, "stdout: %s", r.out);
  ips = strstr(r.out, "\"infer_images_per_s\": ");
  ck_assert_msg(ips && strtod(ips + 22, NULL) > 0.0, "stdout: %s", r.out);
  /* the file's own figures given again are fine; others are refused */
  snprintf(args, sizeof args, "bench --model '%s/pretrained/default.safetensors' --batch 2 "
           "--size 224 --classes 2 --steps 0 --latency-runs 1 --infer-runs 0", src);
  r = run(args);
  ck_assert_msg(r.code == 0, "exit %d, stderr: %s", r.code, r.err);
  ck_assert_msg(strstr(r.out, "default.safetensors, batch 2, 224x224") != NULL, "stdout: %s",
                r.out);
  const char *bad[2] = {"--size 64", "--classes 1000"};
  for (int k = 0; k < 2; k++) {
    snprintf(args, sizeof args, "bench --model '%s/pretrained/default.safetensors' %s", src,
             bad[k]);
    r = run(args);
    ck_assert_msg(r.code == 1, "%s: exit %d", bad[k], r.code);
    ck_assert_msg(strstr(r.err, "its input is 224x224 with 2 classes; --size and --classes "
                         "apply to the built-in architectures") != NULL, "%s: stderr: %s",
                  bad[k], r.err);
  }
  r = run("bench --model /nonexistent/model.safetensors");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "/nonexistent/model.safetensors") != NULL, "stderr: %s", r.err);
  /* host memory: past $WHISKER_MEM_LIMIT_MB, a failure that says what to do */
  setenv("WHISKER_MEM_LIMIT_MB", "10", 1);
  r = run("bench --model resnet18 --size 64 --batch 8 --steps 1 --warmup 0 --latency-runs 1 "
          "--infer-runs 0");
  unsetenv("WHISKER_MEM_LIMIT_MB");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "whisker bench: out of memory: the network's activations and "
                       "gradients need more than $WHISKER_MEM_LIMIT_MB=10 MB") &&
                    strstr(r.err, "try a smaller --batch"), "stderr: %s", r.err);
  r = run("bench --model resnet-50");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--model 'resnet-50': not a built-in architecture (smallcnn, "
                         "resnet18, resnet34, resnet50, mobilenetv2) nor a model file") != NULL, "stderr: %s", r.err);
}
END_TEST

/* --procs re-executes whisker under the launcher with that launcher's own
 * options: Open MPI's, Hydra's (MPICH, Intel MPI) or -np alone, told apart by
 * what `LAUNCHER --version` prints. Fake launchers record their arguments. */
START_TEST(test_launcher_options_per_mpi) {
  char dir[] = "/tmp/wk_cli_mpi_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const struct {
    const char *name, *version, *want, *never, *after;
  } kinds[] = {
      {"ompi", "mpirun (Open MPI) 4.1.4", "-np 2 --bind-to none ", " -bind-to", ""},
      {"hydra", "HYDRA build details:", "-np 2 -bind-to none ", "--", ""},
      {"other", "some launcher 1.0", "-np 2 /", "bind-to", ""},
      /* answers, exits, but leaves a process holding its output open: no wait for that */
      {"ompi-bg", "mpirun (Open MPI) 4.1.4", "-np 2 --bind-to none ", " -bind-to",
       "(sleep 30) & "},
  };
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    char fake[256], args_path[256], got[2048], text[1024];
    snprintf(fake, sizeof fake, "%s/%s", dir, kinds[k].name);
    snprintf(args_path, sizeof args_path, "%s/%s.args", dir, kinds[k].name);
    snprintf(text, sizeof text, "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '%s'; %sexit 0; "
             "fi\necho \"$*\" > '%s'\n", kinds[k].version, kinds[k].after, args_path);
    write_script(fake, text);
    const time_t t0 = time(NULL);
    run_result r = run_launched(fake, "train d --out r --procs 2");
    /* under the launcher's 10 s give-up (launch.c), with room for a busy machine */
    ck_assert_msg(time(NULL) - t0 < 9, "%s: took %lld s", kinds[k].name,
                  (long long)(time(NULL) - t0));
    ck_assert_msg(r.code == 0, "%s: exit %d, stderr: %s", kinds[k].name, r.code, r.err);
    slurp(args_path, got, sizeof got);
    ck_assert_msg(!strncmp(got, kinds[k].want, strlen(kinds[k].want)), "%s: %s", kinds[k].name,
                  got);
    /* the launcher's own options come before whisker's, which follow unchanged */
    const char *exe = strchr(got, '/');
    ck_assert_msg(exe && strstr(exe, " train d --out r --procs 2\n"), "%s: %s", kinds[k].name,
                  got);
    char opts[2048];
    snprintf(opts, sizeof opts, "%.*s", (int)(exe - got), got);
    ck_assert_msg(!strstr(opts, kinds[k].never), "%s: %s", kinds[k].name, got);
    const bool root_opt = strstr(opts, "--allow-run-as-root") != NULL;
    const bool ompi = !strncmp(kinds[k].name, "ompi", 4);
    ck_assert_msg(root_opt == (ompi && geteuid() == 0), "%s: %s", kinds[k].name, got);
    remove(fake), remove(args_path);
  }
  rmdir(dir);
}
END_TEST

/* A launcher that starts the program but tells it nothing of its rank (no
 * OMPI_/PMI_/PMIX_/SLURM_ variables): the started process must not start
 * processes again (each would, without end), and says why. The fake drops
 * -np N and runs the rest once; a second start would leave a second line. */
START_TEST(test_launcher_without_rank_variables_is_refused) {
  char dir[] = "/tmp/wk_cli_relaunch_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char fake[256], log_path[256], got[4096], text[1024];
  snprintf(fake, sizeof fake, "%s/launcher", dir);
  snprintf(log_path, sizeof log_path, "%s/starts", dir);
  snprintf(text, sizeof text, "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'a launcher "
           "1.0'; exit 0; fi\necho start >> '%s'\nshift 2\nexec \"$@\"\n", log_path);
  write_script(fake, text);
  const time_t t0 = time(NULL);
  run_result r =
      run_launched(fake, "bench --procs 2 --model smallcnn --size 32 --batch 4 --steps 1 --warmup 0");
  ck_assert_msg(time(NULL) - t0 < 20, "took %lld s", (long long)(time(NULL) - t0));
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "set none of the variables that give a process its rank") != NULL,
                "stderr: %s", r.err);
  slurp(log_path, got, sizeof got);
  ck_assert_str_eq(got, "start\n"); /* started once, never again */
  remove(fake), remove(log_path);
  rmdir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  /* each test starts whisker several times (the first load of the CUDA plugin's libraries
   * from a cold disk cache takes seconds): Check's 4 s default is too tight under load */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_version_and_help);
  tcase_add_test(tc, test_openmp_wait_setting);
  tcase_add_test(tc, test_usage_errors_exit_2);
  tcase_add_test(tc, test_train_refuses_before_training);
  tcase_add_test(tc, test_train_keeps_an_earlier_run);
  tcase_add_test(tc, test_system_reports_backends);
  tcase_add_test(tc, test_bad_environment_is_a_failure_not_a_crash);
  tcase_add_test(tc, test_without_a_gpu_auto_falls_back_and_cuda_fails);
  tcase_add_test(tc, test_classify_reports_bad_images_and_fails);
  tcase_add_test(tc, test_classify_folder_loop_and_fifo);
  tcase_add_test(tc, test_classify_reads_stdin);
  tcase_add_test(tc, test_classify_json_names_stay_valid);
  tcase_add_test(tc, test_usage_mistakes_are_explained);
  tcase_add_test(tc, test_eval_counts_skipped_images);
  tcase_add_test(tc, test_gpus_and_procs_are_checked);
  tcase_add_test(tc, test_bench_model_file);
  tcase_add_test(tc, test_launcher_options_per_mpi);
  tcase_add_test(tc, test_launcher_without_rank_variables_is_refused);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
