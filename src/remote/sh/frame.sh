stack_main() {
  # A root script from stack is this one function, called on its last line: a script cut short
  # in transit defines nothing and runs nothing. The library and the script's own lines go here.
  : STACK_SCRIPT
}
stack_main
