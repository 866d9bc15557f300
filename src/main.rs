fn main() {
    print!("{}", medianest_operator::crd::to_yaml().unwrap());
}
