from asrlab.cli import main

raise SystemExit(main())
