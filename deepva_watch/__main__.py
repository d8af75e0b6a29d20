from deepva_watch.cli import main

raise SystemExit(main())
