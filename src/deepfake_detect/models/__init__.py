"""The model layer: networks (`networks`: backbone + head), model folders (`config`: config.json,
`checkpoint`: safetensors weights), ensembles of networks (`ensemble`) and the network a folder
describes (`loading`). `config` does not import torch, so engines without PyTorch can read it."""
