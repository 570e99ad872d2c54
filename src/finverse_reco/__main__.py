from finverse_reco.cli import main

main()
