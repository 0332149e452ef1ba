cwlVersion: v1.2
class: Workflow
doc: Two chained tool steps, a scatter over the words and an ExpressionTool step.
requirements:
  ScatterFeatureRequirement: {}
inputs:
  message: string
  words: string[]
outputs:
  greeting:
    type: File
    outputSource: second/greeting
  shouted:
    type: File[]
    outputSource: shout/shouted
  names:
    type: string[]
    outputSource: summarize/names
  count:
    type: int
    outputSource: summarize/count
steps:
  first:
    run: echo.cwl
    in:
      message: message
    out: [result]
  second:
    run: cat.cwl
    in:
      infile: first/result
    out: [greeting]
  shout:
    run: shout.cwl
    scatter: word
    in:
      word: words
    out: [shouted]
  summarize:
    run: summarize.cwl
    in:
      files: shout/shouted
    out: [names, count]
