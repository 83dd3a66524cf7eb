from mnist_cli.cli import main

main()
