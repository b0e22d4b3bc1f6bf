"""Child process: decode untrusted images / videos from a bundle and print JPEG thumbnails.

Run as ``python -m evidencelock.bundle._thumb_worker KIND PATH [KIND PATH …]``.  It caps its
own address space and CPU time before importing OpenCV, so a crafted file that makes a
decoder loop or allocate without bound kills only this process; the parent treats a missing
answer as "no thumbnail" and retries the files after the culprit one by one.  Output: one
JSON line per file, in order, ``{"i": n, "frames": [{"t": seconds|null, "jpeg_b64": …}]}``.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import sys

MAX_SIDE = 360
MAX_PIXELS = 60_000_000


def main() -> int:
    args = sys.argv[1:]
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)
    out = os.dup(1)
    os.dup2(2, 1)  # a chatty native library cannot corrupt the answers
    import cv2  # noqa: PLC0415 - only after the limits are in place

    for i in range(0, len(args) - 1, 2):
        kind, path = args[i], args[i + 1]
        frames = []

        def encode(img, t):
            h, w = img.shape[:2]
            scale = MAX_SIDE / max(h, w)
            if scale < 1:
                img = cv2.resize(img, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                frames.append({"t": t, "jpeg_b64": base64.b64encode(buf.tobytes()).decode()})

        try:
            if kind == "image":
                img = cv2.imread(path, cv2.IMREAD_COLOR)
                if img is not None:
                    encode(img, None)
            elif kind == "video":
                cap = cv2.VideoCapture(path)
                try:
                    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
                    targets = sorted({int(n * f) for f in (0.1, 0.5, 0.9)}) if n > 3 else [0]
                    for idx in targets:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                        ok, img = cap.read()
                        if ok and img is not None:
                            encode(img, round(idx / fps, 2) if fps > 0 else None)
                finally:
                    cap.release()
        except cv2.error:
            frames = []
        os.write(out, (json.dumps({"i": i // 2, "frames": frames}) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
