cwlVersion: v1.2
class: CommandLineTool
doc: Sleeps for a while, then writes a file; long enough to restart a server under it.
baseCommand: [sh, -c]
arguments: ["sleep $0; echo rested > rested.txt", $(inputs.seconds)]
inputs:
  seconds: int
outputs:
  rested:
    type: File
    outputBinding: {glob: rested.txt}
