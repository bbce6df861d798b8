#!/usr/bin/python3
"""gen_clicks_fixtures.py - writes the clickstream parser and renderer fixtures
into tests/fixtures/clicks/ (read by tests/test_clicks.c).

    /usr/bin/python3 scripts/gen_clicks_fixtures.py [WHISKER_BIN]

Standard library only; deterministic (no clock, no random module). With the
whisker binary given it also renders golden_path.png, the renderer's golden:
golden_path.csv as one window, 48 px, bounding-box scaling
(`whisker clicks render ... --size 48 --window 1000 --scale bbox`). Regenerate
the golden only when the rendering is meant to change, and say so in the commit.
tests/fixtures/clicks/README.md lists what each file holds.
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "clicks")
BALABIT_HEADER = "record timestamp,client timestamp,button,state,x,y"


def write(name, text):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)


def balabit_bad():
    """Every bad-row kind once or more; the expected counts are in the test."""
    rows = [
        "0.0,0.0,Scroll,Down,0,0",            # scroll_no_position (no earlier position)
        "0.0,0.0,NoButton,Move,100,200",      # kept 1
        "0.0,0.1,NoButton,Move,65535,65535",  # sentinel
        "0.0,0.2,Scroll,Up,0,0",              # kept 2 (repositioned to 100,200)
        "0.0,abc,NoButton,Move,101,201",      # not_a_number
        "0.0,0.3,NoButton,Move,1x1,201",      # not_a_number
        "0.0,0.3,NoButton",                   # not_a_number (too few fields)
        "0.0,0.3,NoButton,Wiggle,101,201",    # unknown_event
        "0.0,0.3,Thumb,Move,101,201",         # unknown_event
        "0.0,0.4,NoButton,Move,110,210",      # kept 3
        "0.0,0.35,NoButton,Move,111,211",     # time_backwards (small: dropped, no reset)
        "0.0,0.5,NoButton,Move,99999,5",      # absurd_value (coordinate)
        "0.0,-5,NoButton,Move,5,5",           # absurd_value (negative time)
        "0.0,1e400,NoButton,Move,5,5",        # absurd_value (not finite)
        "0.0,0.6," + "NoButton" * 600 + ",Move,1,1",  # line_too_long (> 4096 bytes)
        "0.0,0.7,Left,Pressed,120,220",       # kept 4
        "0.0,0.8,NoButton,Drag,130,230",      # kept 5
        "0.0,0.9,Left,Released,130,230",      # kept 6
        "",                                   # blank: not a row
        "0.0,0.1,NoButton,Move,140,240",      # time_backwards by 0.8 s: dropped, no reset
        "0.0,1.0,NoButton,Move,150,250",      # kept 7
    ]
    return BALABIT_HEADER + "\n" + "\n".join(rows) + "\n"


def clock_reset():
    rows = ["0,10.0,NoButton,Move,10,10", "0,10.5,NoButton,Move,20,20",
            "0,0.0,NoButton,Move,30,30",      # back by 10.5 s: a reset, row dropped
            "0,0.2,NoButton,Move,40,40",      # kept at 10.7
            "0,0.4,NoButton,Move,50,50"]      # kept at 10.9
    return BALABIT_HEADER + "\r\n" + "\r\n".join(rows) + "\r\n"


def golden_path():
    """A fixed small path: moves at rising speed, a pause, a click, a drag,
    scrolls up and down."""
    rows = ["time,x,y,button,event"]
    t = 0.0
    for i in range(20):  # a slow then faster arc
        t += 0.02
        rows.append("%.3f,%d,%d,none,move" % (t, 100 + i * i, 100 + 6 * i))
    t += 1.5  # a pause of 1.5 s
    rows.append("%.3f,%d,%d,none,move" % (t, 480, 230))
    rows.append("%.3f,480,230,left,down" % (t + 0.05))
    for i in range(10):
        rows.append("%.3f,%d,%d,none,drag" % (t + 0.1 + 0.03 * i, 480 - 12 * i, 230 + 10 * i))
    rows.append("%.3f,372,320,left,up" % (t + 0.45))
    rows.append("%.3f,372,320,right,down" % (t + 0.6))
    rows.append("%.3f,372,320,right,up" % (t + 0.65))
    rows.append("%.3f,,,none,scroll_up" % (t + 0.8))
    rows.append("%.3f,300,300,none,move" % (t + 0.9))
    rows.append("%.3f,300,300,none,scroll_down" % (t + 1.0))
    rows.append("%.3f,200,330,none,move" % (t + 1.05))
    return "\n".join(rows) + "\n"


def mini_session(user, n, phase):
    """A Balabit-format session: alice works in the top-left of the screen with
    slow strokes, bob in the bottom-right with fast ones."""
    rows = [BALABIT_HEADER]
    t = 0.0
    for i in range(n):
        if user == "alice":
            t += 0.05
            x, y = 100 + (i * 7 + phase * 13) % 500, 100 + (i * 3) % 300
        else:
            t += 0.01
            x, y = 1300 + (i * 11 + phase * 17) % 500, 700 + (i * 5) % 300
        state = "Pressed" if i % 40 == 39 else "Move"
        rows.append("%.3f,%.3f,%s,%s,%d,%d" % (t, t, "Left" if state == "Pressed" else "NoButton",
                                              state, x, y))
    return "\n".join(rows) + "\n"


def mini_balabit():
    """training_files/{alice,bob}, test_files/{alice,bob} and labels.csv: each
    test folder holds one session of its user and one of the other."""
    labels = ["filename,is_illegal"]
    for u, user in enumerate(("alice", "bob")):
        for k in range(2):
            write("mini_balabit/training_files/%s/session_%d%d00" % (user, u, k),
                  mini_session(user, 240, k))
        other = ("bob", "alice")[u]
        write("mini_balabit/test_files/%s/session_%d010" % (user, u), mini_session(user, 96, 5))
        write("mini_balabit/test_files/%s/session_%d011" % (user, u), mini_session(other, 96, 6))
        labels += ["session_%d010,0" % u, "session_%d011,1" % u]
    write("mini_balabit/labels.csv", "\n".join(labels) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    write("balabit_bad.csv", balabit_bad())
    write("clock_reset.csv", clock_reset())
    write("empty.csv", "")
    write("header_only.csv", BALABIT_HEADER + "\n")
    write("blank_lines.csv", "\n\n  \n")
    write("not_clicks.txt", "hello,world\n1,2\n")
    write("generic.csv",
          "time,x,y,button,event\n"
          "0.00,10,20,none,move\n"
          "0.05,15,25,left,down\n"
          "0.10,20,30,none,drag\n"
          "0.15,20,30,left,up\n"
          "0.20,,,none,scroll_down\n"         # kept at 20,30
          "0.25,30,40,none,teleport\n"        # unknown_event
          "0.30,thirty,40,none,move\n"        # not_a_number
          "0.35,35,45,none,move\n")
    write("generic_reordered.csv", "x,y,t\n1,2,0.5\n3,4,0.6\n5,6,0.7\n")
    write("generic.jsonl",
          '{"time": 0.0, "x": 10, "y": 20, "event": "move"}\n'
          '{"time": 0.1, "x": 12, "y": 22, "button": "left", "event": "press"}\n'
          '{"time": 0.2, "x": 12, "y": 22, "button": "left", "event": "release"}\n'
          '{"time": 0.3, "event": "scroll_up"}\n'                    # kept at 12,22
          '{"time": 0.4, "x": 65535, "y": 65535, "event": "move"}\n'  # sentinel
          '{"time": 0.5, "x": "15", "y": 25}\n'                      # kept (number strings)
          '{"time": 0.6, "x": 15\n'                                  # not_a_number (bad JSON)
          '{"t": 0.7, "x": 16, "y": 26, "type": "hover"}\n'          # unknown_event
          '{"time": 0.05, "x": 17, "y": 27}\n')                      # time_backwards
    write("golden_path.csv", golden_path())
    for user, sessions in (("alice", 2), ("bob", 1)):
        for s in range(sessions):
            rows = ["time,x,y"]
            for i in range(40):
                rows.append("%.2f,%d,%d" % (0.02 * i, 50 + 7 * i + 31 * s, 400 - 5 * i))
            write("users/%s/session_%d.csv" % (user, s), "\n".join(rows) + "\n")
    mini_balabit()
    if len(sys.argv) > 1:
        tmp = tempfile.mkdtemp()
        try:
            subprocess.run([sys.argv[1], "clicks", "render", os.path.join(OUT, "golden_path.csv"),
                            "--out", tmp, "--size", "48", "--window", "1000", "--scale", "bbox",
                            "--labels", os.path.join(OUT, "golden_labels.csv")], check=True)
            shutil.copyfile(os.path.join(tmp, "golden", "golden_path.csv_00000.png"),
                            os.path.join(OUT, "golden_path.png"))
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    write("golden_labels.csv", "filename,label\ngolden_path.csv,golden\n")
    main()
