from xdistil.cli import main

main()
