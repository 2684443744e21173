"""The data layer: image loading (`images`), datasets, records and splits (`datasets`), split
manifests (`manifest`), preprocessing and augmentation (`transforms`), the dataset audit
(`audit`), PyTorch datasets (`loaders`) and `prepare_dataset`, which turns a run's data options
into its training and validation records (`prepare`). It imports nothing of the layers above."""
