from simulators.ilert.server import main

main()
