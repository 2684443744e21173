from deepfake_detect.cli.app import main

main()
