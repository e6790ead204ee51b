"""The PP-OCR system's default settings, in one place and without imports.

:class:`xcompress.ocr.system.SystemConfig` (which needs OpenCV), the evaluation config of
``xcompress eval --system`` and the recipe's ``system:`` section all default to these, so a recipe
or an evaluation module can name them without importing OpenCV.
"""

#: lines read with a lower CTC score are dropped (PaddleOCR's ``drop_score``)
DROP_SCORE = 0.5
#: a crop is turned 180 degrees when the classifier says so with at least this probability
CLS_THRESH = 0.9
#: crops per classifier call (PaddleOCR's ``cls_batch_num``)
CLS_BATCH = 6
#: crops per recognizer call (PaddleOCR's ``rec_batch_num``)
REC_BATCH = 6
