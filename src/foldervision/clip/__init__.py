"""Search by words: CLIP's image and text towers on ONNX Runtime, fed as OpenCLIP feeds them.

Rooms: `tokenizer` (text -> ids) and `preprocess` (image -> pixels) reproduce OpenCLIP;
`model_folder` is the on-disk layout; `embedder` runs the towers (an `Embedder` for the index
plus `embed_texts`); `models` names the registered models and resolves `--model`; `pull`
downloads a registered model from its pinned source; `zero_shot` labels images by prompts.
"""
