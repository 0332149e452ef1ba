cwlVersion: v1.2
class: CommandLineTool
doc: Announces itself, then sleeps long enough to be canceled.
baseCommand: [sh, -c, 'echo "sleeping"; exec sleep 600']
inputs: []
outputs: []
