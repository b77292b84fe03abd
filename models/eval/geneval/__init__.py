"""GenEval: prompts, folder layout, rules, results files and their summary; GenEval's Mask2Former detector converted
from mmdetection into transformers, the CLIP colour classifier, and the generate-then-score flow."""
