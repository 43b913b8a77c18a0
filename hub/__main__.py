from hub.cli import main

if __name__ == "__main__":  # the guard matters: parse workers are spawned and re-import __main__
    main()
