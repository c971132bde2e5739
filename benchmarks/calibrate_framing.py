"""Re-derive detect.FRAMING: median offsets of each backend box to dlib HOG boxes on LFW."""
import numpy as np
from facedeid.faces import detect as D
from facedeid.bench.datasets import lfw_images
from facedeid.media.images import read_image
imgs = lfw_images()[::9][:200]
rows = {b: [] for b in ['centerface','haar','cnn']}
for p in imgs:
    img = read_image(p).rgb
    hog = D._run_backend(D._BACKENDS['hog'], img)
    if len(hog)!=1: continue
    h = hog[0][0]
    for b in rows:
        if b=='cnn' and len(rows[b])>=60: continue
        for box,s in D._run_backend(D._BACKENDS[b], img):
            if box.iou(h) > 0.3:
                w, hh = box.width, box.height
                rows[b].append([(h.x0-box.x0)/w, (h.y0-box.y0)/hh, (h.x1-box.x1)/w, (h.y1-box.y1)/hh])
for b, r in rows.items():
    r = np.array(r); print(b, len(r), np.round(np.median(r,0),4).tolist(), np.round(r.std(0),3).tolist())
