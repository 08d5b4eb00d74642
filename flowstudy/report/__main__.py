from flowstudy.report.command import main

main()
