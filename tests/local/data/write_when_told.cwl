cwlVersion: v1.2
class: CommandLineTool
doc: Waits until the file its input names exists, then writes an output file of `megabytes` MiB.
baseCommand: [sh, -c]
arguments: ["while [ ! -e $0 ]; do sleep 0.1; done; dd if=/dev/zero of=big.bin bs=1048576 count=$1", $(inputs.go),
            $(inputs.megabytes)]
inputs:
  go: string
  megabytes: int
outputs:
  big:
    type: File
    outputBinding: {glob: big.bin}
